"""Errors a user can act on, and the exit status each maps to (the CLI's contract).

0: the command ran (whatever an audit found); 1: internal error; 2: `BadInput` (the
message names the file, row or flag); 3: `--fail-on` named a flag the audit raised;
4: the model could not be measured (`ModelUnavailable`, or an audit whose failed model
calls passed the failure threshold); 130: interrupted.
"""

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_FLAG_RAISED, EXIT_UNMEASURED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


class BadInput(ValueError):
    """Input that cannot be used: the message names the file, row or flag at fault."""


class MissingExtra(ImportError):
    """An optional dependency is needed for what was asked; the message says what to install."""


class ModelUnavailable(RuntimeError):
    """The model answered none of the calls sent to it (a dead or unreachable server): the run
    stops at once rather than score infrastructure errors. The message names the server."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during an audit; the message says what was saved and how to resume."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

"""Errors a user can act on. `BadInput` maps to exit status 2 and names the file, row or flag."""


class BadInput(ValueError):
    """Input that cannot be used: the message names the file, row or flag at fault."""


class MissingExtra(ImportError):
    """An optional dependency is needed for what was asked; the message says what to install."""

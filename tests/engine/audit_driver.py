"""Run `faithcheck` with every backend hand-over logged, for the kill-and-resume tests.

    python tests/engine/audit_driver.py LOG faithcheck-args...

Appends one JSON line per event to LOG: "sent" (requests handed to the backend),
"answered" (calls the backend handed back answered, before the engine saves them) and
"saved" (after the engine returned from saving them). Local backends (the base class's
`generate_stream`, and hf/organism's, which hands over each decoded batch) are logged here;
server calls are logged by the test's server.
"""

from __future__ import annotations

import json
import sys
import time

import faithcheck.backends.base as base
import faithcheck.backends.hf as hf

_log = open(sys.argv[1], "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the process


def _write(event: str, keys: list[str]) -> None:
    _log.write(json.dumps({"event": event, "t": time.time(), "keys": keys}) + "\n")


def _logging(original):
    def logged(self, requests, emit):
        _write("sent", [r.key() for r in requests])

        def logged_emit(pairs):
            keys = [requests[i].key() for i, c in pairs if c.error is None]
            _write("answered", keys)
            emit(pairs)
            _write("saved", keys)

        return original(self, requests, logged_emit)

    return logged


for cls in (base.Backend, hf.HFBackend):
    cls.generate_stream = _logging(cls.generate_stream)

if __name__ == "__main__":
    from faithcheck.cli import main

    sys.exit(main(sys.argv[2:]))

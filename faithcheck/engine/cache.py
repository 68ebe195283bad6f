"""SQLite cache of finished model calls, keyed by model fingerprint + canonical request.

Each batch is committed as soon as it returns, so an audit killed at any point (Ctrl-C,
kill -9) and started again repeats no finished call. WAL mode and a busy timeout let
several processes (pytest-xdist workers) share one file safely. JSON only, no pickle.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path

from faithcheck.records import Completion, GenerationRequest, canonical_json

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    model TEXT NOT NULL,
    key TEXT NOT NULL,
    request TEXT NOT NULL,
    completion TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (model, key)
)
"""


def default_cache_path() -> Path:
    root = os.environ.get("FAITHCHECK_CACHE_DIR") or Path.home() / ".cache" / "faithcheck"
    return Path(root) / "calls.sqlite"


class CallCache:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        self._db.execute(SCHEMA)

    def get_many(self, model: str, keys: list[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, completion FROM calls WHERE model = ? AND key IN ({marks})", [model, *chunk]
            ).fetchall()
            found.update({k: Completion(**json.loads(c)) for k, c in rows})
        return found

    def put_many(self, model: str, pairs: list[tuple[GenerationRequest, Completion]]) -> None:
        """Store finished calls in one transaction; failed calls are not stored (a resume retries them)."""
        now = time.time()
        rows = [
            (model, req.key(), canonical_json(asdict(req)), canonical_json(asdict(comp)), now)
            for req, comp in pairs if comp.error is None
        ]
        if rows:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM calls WHERE model = ?", [model]).fetchone()[0]

    def close(self) -> None:
        self._db.close()

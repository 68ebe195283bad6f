"""SQLite cache of finished model calls, keyed by model fingerprint + canonical request,
and a claim table so that several processes sharing one cache never compute a call twice.

The engine stores each answered call as it arrives (server backends) or each batch as it
returns (local ones), so an audit killed at any point (Ctrl-C, kill -9) and started again
repeats no answered call. WAL mode with `synchronous=NORMAL`: a commit survives the
process being killed (only a power loss can drop the last commits), at the cost of no
fsync per call. JSON only, no pickle.

Claims: before computing a chunk, a process claims its keys (one row per key, with its
owner and an expiry it renews while alive). Another process skips claimed keys and waits
for their results; a claim is stale once it expires or, on this host, once its process is
gone, and is then taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from faithcheck.errors import BadInput
from faithcheck.records import Completion, GenerationRequest, canonical_json

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS calls (
        model TEXT NOT NULL, key TEXT NOT NULL, request TEXT NOT NULL, completion TEXT NOT NULL,
        created REAL NOT NULL, PRIMARY KEY (model, key))""",
    """CREATE TABLE IF NOT EXISTS claims (
        model TEXT NOT NULL, key TEXT NOT NULL, owner TEXT NOT NULL, expires REAL NOT NULL,
        PRIMARY KEY (model, key))""",
)
SQLITE_MAGIC = b"SQLite format 3\x00"
CLAIM_TTL = 120.0  # seconds a claim lives without renewal; a live owner renews every CLAIM_TTL / 6


def default_cache_path() -> Path:
    root = os.environ.get("FAITHCHECK_CACHE_DIR") or Path.home() / ".cache" / "faithcheck"
    return Path(root) / "calls.sqlite"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def check_cache_path(path: Path, flag: str = "--cache") -> None:
    """BadInput naming the flag when `path` cannot be a cache file: a directory, a file that is
    not SQLite, or a place where the file cannot be created."""
    if path.is_dir():
        raise BadInput(f"{flag} {path}: is a directory; give a file path such as {path / 'calls.sqlite'}")
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise BadInput(f"{flag} {path}: not readable and writable")
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:
            raise BadInput(f"{flag} {path}: exists and is not an SQLite database (refusing to overwrite it)")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BadInput(f"{flag} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{flag} {path}: cannot create it ({parent} is not writable)")


class CallCache:
    def __init__(self, path: Path | str, flag: str = "--cache"):
        self.path = Path(path)
        check_cache_path(self.path, flag)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # one connection shared by the engine and its claim-renewal thread, behind a lock
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for stmt in SCHEMA:
                self._db.execute(stmt)
        except (sqlite3.DatabaseError, OSError) as e:
            raise BadInput(f"{flag} {self.path}: cannot be used as the call cache ({e})") from None
        self._lock = threading.RLock()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # -- finished calls ------------------------------------------------------------------

    def get_many(self, model: str, keys: list[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, completion FROM calls WHERE model = ? AND key IN ({marks})", [model, *chunk]
                ).fetchall()
                found.update({k: Completion(**json.loads(c)) for k, c in rows})
        return found

    def put_many(self, model: str, pairs: list[tuple[GenerationRequest, Completion]]) -> int:
        """Store answered calls in one transaction and drop their claims; failed calls are not
        stored (a resume retries them). Returns how many were stored."""
        now = time.time()
        rows = [
            (model, req.key(), canonical_json(asdict(req)), canonical_json(asdict(comp)), now)
            for req, comp in pairs if comp.error is None
        ]
        if rows:
            self._write(lambda db: (
                db.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?)", rows),
                db.executemany("DELETE FROM claims WHERE model = ? AND key = ?", [(model, r[1]) for r in rows]),
            ))
        return len(rows)

    def count(self, model: str | None = None) -> int:
        with self._lock:
            if model is None:
                return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM calls WHERE model = ?", [model]).fetchone()[0]

    # -- claims --------------------------------------------------------------------------

    def claim(self, model: str, keys: list[str], ttl: float = CLAIM_TTL) -> list[str]:
        """The subset of `keys` this process now owns: neither cached nor claimed by a live owner."""
        if not keys:
            return []
        now, mine = time.time(), []

        def work(db: sqlite3.Connection) -> None:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                cached = {k for (k,) in db.execute(
                    f"SELECT key FROM calls WHERE model = ? AND key IN ({marks})", [model, *chunk])}
                held = dict(db.execute(
                    f"SELECT key, owner FROM claims WHERE model = ? AND key IN ({marks}) AND expires >= ?",
                    [model, *chunk, now]).fetchall())
                free = [k for k in chunk if k not in cached and (
                    k not in held or held[k] == self.owner or not self._owner_alive(held[k]))]
                db.executemany("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)",
                               [(model, k, self.owner, now + ttl) for k in free])
                mine.extend(free)

        self._write(work)
        return mine

    def release(self, model: str, keys: list[str]) -> None:
        """Drop this process's claims on `keys` (a failed call: another process may try it)."""
        if keys:
            self._write(lambda db: db.executemany(
                "DELETE FROM claims WHERE model = ? AND key = ? AND owner = ?", [(model, k, self.owner) for k in keys]))

    def release_all(self) -> None:
        self._write(lambda db: db.execute("DELETE FROM claims WHERE owner = ?", [self.owner]))

    def renew(self, ttl: float = CLAIM_TTL) -> None:
        self._write(lambda db: db.execute("UPDATE claims SET expires = ? WHERE owner = ?", [time.time() + ttl, self.owner]))

    def _owner_alive(self, owner: str) -> bool:
        """False for a claim whose process is known to be gone (same host, pid not running)."""
        host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        if host != socket.gethostname() or not pid.isdigit():
            return True  # another host: only the expiry tells
        return _pid_alive(int(pid))

    def _write(self, work) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                work(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM claims WHERE owner = ?", [self.owner])
            except sqlite3.Error:
                pass
            self._db.close()

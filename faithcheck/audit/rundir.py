"""A run directory appears whole or not at all.

The audit writes into a hidden sibling (`.NAME.partial-PID`) and renames it into place
when every file is written; a previous run under the same name is moved aside first and
deleted after. A kill at any moment leaves either the old directory untouched or the new
one complete (plus, at worst, a hidden leftover that the next run of the same name
removes), never a mix of old and new files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from faithcheck.errors import BadInput

PARTIAL = ".partial-"


def partial_dir(final: Path, flag: str = "--out") -> Path:
    """Create and return the hidden sibling the run is written into. BadInput naming the flag
    when `final` cannot be written (a file in the way, a parent that is a file, no permission)."""
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise BadInput(f"{flag} {final}: exists and is not a directory")
    for parent in final.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BadInput(f"{flag} {final}: {parent} is not a directory")
            break
    for old in final.parent.glob(f".{final.name}{PARTIAL}*") if final.parent.is_dir() else ():
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)  # left by a killed run
    for old in final.parent.glob(f".{final.name}.old-*") if final.parent.is_dir() else ():
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):  # killed between the two renames of publish()
            if final.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(old, final)
    work = final.parent / f".{final.name}{PARTIAL}{os.getpid()}"
    try:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        probe = work / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise BadInput(f"{flag} {final}: cannot write there ({e.strerror or e})") from None
    return work


def publish(work: Path, final: Path) -> Path:
    """Rename the finished `work` directory to `final`, replacing a previous run there."""
    final = Path(final)
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.rename(final, old)
    os.rename(work, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def discard(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""One ``kubenas run`` per results folder.

Two runs writing one folder (a ``--resume DIR`` while the run in DIR still goes on) would both append
to its journal and delete each other's trial folders. Each run holds an exclusive ``flock`` on
``DIR/.lock`` from the moment it chooses the folder until it ends; a second run is refused with the
holder's pid. The kernel drops the lock when its holder dies, so the file a killed run leaves behind
blocks nothing: the pid in it is only for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from kubenas.local.errors import FolderInUse, write_error

LOCK_FILE = ".lock"

#: the folders this process holds, so that ``prepare`` and ``run`` (and a one-shot search's phase 3)
#: share one lock instead of refusing each other (flock locks of two opens conflict within a process)
_held: dict[Path, IO[str]] = {}


def hold(folder: Path) -> bool:
    """Take the lock on ``folder`` unless this process holds it already; True when taken now.

    FolderInUse when another process holds it; ResultsError when the lock file cannot be written
    (a read-only folder, or one that is not a folder).
    """
    key = folder.resolve()
    if key in _held:
        return False
    path = folder / LOCK_FILE
    try:
        fh = path.open("a+", encoding="utf-8")
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        pid = fh.read().strip() or "unknown"
        fh.close()
        raise FolderInUse(f"{folder} is in use by another kubenas run (pid {pid})") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
    except OSError as exc:
        fh.close()
        raise write_error(path, exc) from None
    _held[key] = fh
    return True


def release(folder: Path) -> None:
    """Let go of ``folder`` (nothing when this process does not hold it); the file stays, unlocked:
    removing it would let a run lock a new file while another still holds the old one."""
    fh = _held.pop(folder.resolve(), None)
    if fh is not None:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()

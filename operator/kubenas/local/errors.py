"""Typed errors of local mode (``kubenas run``).

Each one names the file (and line) or the folder at fault, so ``kubenas run`` prints its message as
one line and exits 2, as it does for a refused manifest, instead of a traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path


class LocalRunError(RuntimeError):
    """The run cannot start or go on; the message says why and where."""


class JournalError(LocalRunError):
    """A journal line that no write of Kubenas produces: a resume would replay a history it cannot trust.

    Only the last line can be torn by a crash (it is dropped); anything else is corruption.
    """

    def __init__(self, path: Path, line: int, message: str) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {message}")


class ResultsError(LocalRunError):
    """The results folder cannot be written (no space left, read-only, not a folder)."""


class FolderInUse(LocalRunError):
    """Another ``kubenas run`` holds the results folder: two writers would corrupt its journal."""


def write_error(path: Path, exc: OSError) -> ResultsError:
    """The one-line error for an OSError met writing ``path`` (the file the error names, if any)."""
    where = Path(exc.filename) if isinstance(exc.filename, str) and exc.filename else path
    if exc.errno == errno.ENOSPC:
        return ResultsError(f"no space left on device writing {where}")
    return ResultsError(f"cannot write {where}: {exc.strerror or exc}")

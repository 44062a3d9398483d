"""SIGTERM stops ``kubenas run`` the way Ctrl-C does.

Trials run in their own sessions (so that Ctrl-C reaches only the runner, which stops them in order),
hence a SIGTERM that kills the runner outright would leave them running with no summary written.
While the run goes on, SIGTERM raises KeyboardInterrupt in the main thread instead: the runner sends
SIGTERM to its trials, reaps them and writes the summary. Further SIGTERMs are ignored while that
stop is under way (it ends within the trials' grace period), so a second one cannot orphan them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType


@dataclass
class Received:
    """The stopping signal the run received, if any (its number), for the exit code 128 + N."""

    signum: int | None = None


@contextmanager
def sigterm_as_interrupt() -> Iterator[Received]:
    """Within the block, SIGTERM raises KeyboardInterrupt (once); the previous handler comes back after.

    Outside the main thread a handler cannot be installed, and nothing changes.
    """
    received = Received()
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if received.signum is None:
            received.signum = signum
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

"""The driver and the strategy side in one process, with nothing between them.

Local mode runs trials as processes and the operator as pods, but the tabular benchmark and the
tests that need an "unbroken run" to compare with hold everything in memory. For those, three of the
driver's commands need no outside world at all: asks and tells go straight to the :class:`Search`,
and a ``Store`` is acknowledged at once because the result already lives in memory. This module is
that loop, written once; what is left to its owner is the only thing that differs between them,
how a created trial gets its result.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from kubenas.core.driver import AskFor, Command, Create, Driver, Event, ResultStored, Store, Tell
from kubenas.core.search import Search

__all__ = ["InProcess"]


class InProcess:
    """Carries out asks, tells and stores in process; collects the trials the driver creates.

    ``created`` holds the indices of trials created and not yet taken by the owner, oldest first.
    Other commands (MarkRunning, Relaunch, Cancel, Prune, Finish) concern the owner's runtime and
    are left to it: they come back from :meth:`run` in the order the driver gave them.
    """

    def __init__(self, driver: Driver, search: Search) -> None:
        self.driver = driver
        self.search = search
        self.created: deque[int] = deque()
        self.stored = 0
        self._pending: deque[Command] = deque()

    def start(self, first: Iterable[Command] | None = None) -> list[Command]:
        """Begin with the driver's first commands (or ``first``, those a rebuilt driver answered)."""
        return self.run(self.driver.start() if first is None else first)

    def handle(self, *events: Event) -> list[Command]:
        """Hand events to the driver and carry out what follows."""
        return self.run(self.driver.handle(*events))

    def run(self, commands: Iterable[Command], stop_after: int | None = None) -> list[Command]:
        """Carry out ``commands`` and all that follow until none is left (or ``stop_after`` results
        are stored in all, leaving the rest undone, as a crash would); returns the runtime's commands.
        """
        self._pending.extend(commands)
        left: list[Command] = []
        while self._pending:
            command = self._pending.popleft()
            if isinstance(command, (AskFor, Tell)):
                answer = self.search.serve(command)
                if answer is not None:
                    self._pending.extend(self.driver.handle(answer))
            elif isinstance(command, Create):
                self.created.append(command.trial.index)
            elif isinstance(command, Store):
                self.stored += 1
                self._pending.extend(self.driver.handle(ResultStored(command.trial.index)))
                if stop_after is not None and self.stored >= stop_after:
                    self._pending.clear()
                    break
            else:
                left.append(command)
        return left

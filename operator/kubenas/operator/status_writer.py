"""Coalesced status writes: at most one experiment status patch per interval, always the latest.

With 50 trials in flight, trials can finish many times a second; the counts and progress need not
reach the API server at that rate. The reconciler hands every new desired status to the writer and
moves on; the writer patches the latest one at most once per ``interval`` (at once when urgent: a
phase change, the end of the search). The write runs in the background, off the path that starts
the next trial.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Write = Callable[[Mapping[str, Any]], Awaitable[None]]


class StatusWriter:
    """Single-flight, latest-wins writer of one object's status."""

    def __init__(self, write: Write, interval: float, logger: logging.LoggerAdapter) -> None:  # type: ignore[type-arg]
        self._write = write
        self._interval = interval
        self._log = logger
        self._pending: Mapping[str, Any] | None = None
        self._urgent = asyncio.Event()
        self._last = -float("inf")
        self._task: asyncio.Task[None] | None = None

    def submit(self, desired: Mapping[str, Any], urgent: bool = False) -> None:
        """Write ``desired`` soon; a later submit before the write replaces it."""
        self._pending = desired
        if urgent:
            self._urgent.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="status writer")

    @property
    def idle(self) -> bool:
        return self._pending is None and (self._task is None or self._task.done())

    async def _run(self) -> None:
        failures = 0
        while self._pending is not None:
            wait = self._last + self._interval - time.monotonic()
            if wait > 0 and not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):  # an urgent submit cuts the wait short
                    async with asyncio.timeout(wait):
                        await self._urgent.wait()
            desired, self._pending = self._pending, None
            self._urgent.clear()
            try:
                await self._write(desired)
                failures = 0
            except Exception as exc:
                failures += 1
                self._log.warning("status write failed", extra={"error": repr(exc), "failures": failures})
                if self._pending is None:
                    self._pending = desired
                await asyncio.sleep(min(30.0, 0.2 * 2**failures))
            self._last = time.monotonic()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

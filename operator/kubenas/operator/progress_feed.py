"""The operator's end of the push channel: trainer reports read from the controller pod, as they come.

One background task per experiment holds a long-poll on the controller's ``/points``: the controller
answers as soon as a trainer posts an epoch (or after :data:`WAIT_SECONDS` with nothing), the task
keeps what came and wakes the reconciler, whose next pass turns it into the driver's ``Progress``
events. No timer runs while no trainer reports.

The cursor is ``(controller instance, last point number)``: a restarted controller has a new instance
and numbers from 1 again, so the feed reads it from the start. What a restarted controller had not
handed out is lost; a point seen twice changes nothing (the driver ignores a step at or below a
trial's last one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import aiohttp

from kubenas.controller.progress import Point
from kubenas.operator.controller_client import (
    ControllerClient,
    ControllerOutOfSync,
    ControllerRefused,
    ControllerUnavailable,
    Endpoint,
)

#: how long one read waits at the controller for a first new point
WAIT_SECONDS = 25.0
#: pause after a failed read (controller restarting, moved, or gone with the experiment), doubled
#: after each further failure up to MAX_RETRY_SECONDS (a controller image without the channel
#: answers 404 for good; a controller that moved is followed at once through ``follow``)
RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0
#: reports kept between two passes (a reconciler that cannot run for a while drops the oldest)
MAX_PENDING = 4096


class ProgressFeed:
    """Reads one experiment's trainer reports in the background (see the module docstring)."""

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        wake: Callable[[], None],
        log: logging.LoggerAdapter,  # type: ignore[type-arg]
    ) -> None:
        self._session = session
        self._wake = wake
        self.log = log
        self.endpoint: Endpoint | None = None
        self.instance: str | None = None
        self.after = 0
        self.pending: list[Point] = []
        self.dropped = 0  # reports that aged out at the controller before they were read
        self._task: asyncio.Task[None] | None = None

    def follow(self, endpoint: Endpoint) -> None:
        """Read from the controller at ``endpoint`` (again, if it moved)."""
        if endpoint == self.endpoint and self._task is not None and not self._task.done():
            return
        self.endpoint = endpoint
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._run(endpoint), name="progress feed")

    def drain(self) -> list[Point]:
        """The reports received since the last call, in arrival order."""
        out, self.pending = self.pending, []
        return out

    async def stop(self) -> None:
        task, self._task, self.endpoint = self._task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self, endpoint: Endpoint) -> None:
        client = ControllerClient(self._session(), endpoint, timeout=10.0)
        failures = 0
        while True:
            try:
                found, dropped, state = await client.points(self.instance, self.after, WAIT_SECONDS)
            except (ControllerUnavailable, ControllerOutOfSync, ControllerRefused) as exc:
                failures += 1
                self.log.debug("progress read failed", extra={"error": repr(exc), "failures": failures})
                await asyncio.sleep(min(MAX_RETRY_SECONDS, RETRY_SECONDS * 2 ** (failures - 1)))
                continue
            failures = 0
            if state.instance != self.instance:
                self.instance, self.after = state.instance, 0
            if dropped:
                self.dropped += 1
                self.log.warning("trainer reports aged out at the controller before they were read")
            if not found:
                continue
            self.after = found[-1].seq
            self.pending.extend(found)
            del self.pending[:-MAX_PENDING]
            self._wake()

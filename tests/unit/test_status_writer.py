"""The coalescing status writer: latest wins, urgent cuts the wait, close means no more writes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from kubenas.operator.status_writer import StatusWriter

LOG = logging.LoggerAdapter(logging.getLogger("test"), {})


def recording_writer() -> tuple[StatusWriter, list[Mapping[str, Any]]]:
    """A writer with a 30 s interval, and the list its writes land in."""
    written: list[Mapping[str, Any]] = []

    async def write(desired: Mapping[str, Any]) -> None:
        written.append(desired)

    return StatusWriter(write, interval=30.0, logger=LOG), written


def test_writes_coalesce_to_the_latest_and_urgent_ones_go_at_once() -> None:
    async def main() -> None:
        writer, written = recording_writer()
        writer.submit({"n": 1})
        await asyncio.sleep(0.05)
        assert written == [{"n": 1}]  # the first write goes at once
        writer.submit({"n": 2})
        writer.submit({"n": 3})
        await asyncio.sleep(0.05)
        assert written == [{"n": 1}]  # within the interval: held back
        writer.submit({"n": 4}, urgent=True)
        await asyncio.sleep(0.05)
        assert written == [{"n": 1}, {"n": 4}] and writer.idle  # 2 and 3 were never written
        await writer.close()

    asyncio.run(main())


def test_close_that_meets_an_urgent_submit_writes_nothing_more() -> None:
    """The urgent wake-up and the cancel land in the same loop step: the cancel must win (with
    asyncio.wait_for on Python 3.11 the wake-up won and a write went out after close)."""

    async def main() -> None:
        writer, written = recording_writer()
        writer.submit({"n": 1})
        await asyncio.sleep(0.05)
        writer.submit({"n": 2})
        await asyncio.sleep(0.05)  # the writer now waits out its interval
        writer.submit({"n": 3}, urgent=True)
        await writer.close()
        await asyncio.sleep(0.05)
        assert written == [{"n": 1}]

    asyncio.run(main())

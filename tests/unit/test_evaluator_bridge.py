"""The evaluator pod's HTTP bridge around a stand-in evaluate command (no torch): the operator's client
waits as long as the bridge may take to answer, and the bridge logs each candidate it scored."""

from __future__ import annotations

import asyncio
import logging
import sys

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from kubenas.controller.evaluator import make_app
from kubenas.operator.controller_client import ControllerClient, Endpoint

#: answers the probe at once (loaded), and each candidate after half a second
SLOW_COMMAND = [
    sys.executable,
    "-c",
    "import json, sys, time\n"
    "for line in sys.stdin:\n"
    "    index = json.loads(line)['index']\n"
    "    if index is not None:\n"
    "        time.sleep(0.5)\n"
    "    print(json.dumps({'index': index, 'exitCode': 0, 'result': {'val_accuracy': 0.5}}), flush=True)\n",
]


def test_a_candidate_slower_than_the_clients_timeout_is_still_answered(caplog: pytest.LogCaptureFixture) -> None:
    """Scoring a candidate (recalibration, fine-tuning steps) may take minutes on a large supernet: the
    operator's usual request timeout would fail the pass, and the same candidate again on every pass."""

    async def main() -> dict[str, object]:
        server = TestServer(make_app("tok", SLOW_COMMAND), host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                client = ControllerClient(session, Endpoint("127.0.0.1", server.port or 0, "tok"), timeout=0.2)
                return await client.evaluate(7, {"edge_1_0": "none"})
        finally:
            await server.close()

    with caplog.at_level(logging.INFO, logger="kubenas.controller.evaluator"):
        answer = asyncio.run(main())
    assert answer == {"index": 7, "exitCode": 0, "result": {"val_accuracy": 0.5}}
    scored = [r for r in caplog.records if r.getMessage() == "candidate scored"]
    assert [(r.index, r.exitCode) for r in scored] == [(7, 0)]  # type: ignore[attr-defined]
    assert scored[0].seconds >= 0.5  # type: ignore[attr-defined]

"""The controller over HTTP, called with the operator's own client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from kubenas.controller.server import make_app
from kubenas.core.records import TrialRecord
from kubenas.operator.controller_client import (
    ControllerClient,
    ControllerOutOfSync,
    ControllerRefused,
    ControllerUnavailable,
    Endpoint,
)

from .test_controller_service import SPEC, reward

TOKEN = "s3cret"

Scenario = Callable[[ControllerClient, TestServer, aiohttp.ClientSession], Awaitable[None]]


def run(scenario: Scenario, token: str = TOKEN) -> None:
    async def main() -> None:
        server = TestServer(make_app(TOKEN, "exp"), host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                client = ControllerClient(session, Endpoint("127.0.0.1", server.port or 0, token), timeout=10)
                await scenario(client, server, session)
        finally:
            await server.close()

    asyncio.run(main())


def test_health_needs_no_token_and_shows_the_state() -> None:
    async def scenario(client: ControllerClient, server: TestServer, session: aiohttp.ClientSession) -> None:
        state = await client.health()
        assert (state.configured, state.asked, state.told) == (False, 0, 0)

    run(scenario, token="wrong")


def test_every_post_needs_the_token() -> None:
    async def scenario(client: ControllerClient, server: TestServer, session: aiohttp.ClientSession) -> None:
        with pytest.raises(ControllerUnavailable, match="bearer token"):
            await client.replay("exp", SPEC, [])

    run(scenario, token="wrong")


def test_ask_tell_replay_round_trip() -> None:
    async def scenario(client: ControllerClient, server: TestServer, session: aiohttp.ClientSession) -> None:
        with pytest.raises(ControllerOutOfSync):
            await client.ask(0, 1)  # not configured yet: the operator replays first
        await client.replay("exp", SPEC, [])
        candidates, state = await client.ask(0, 2)
        assert [c.index for c in candidates] == [0, 1] and state.asked == 2
        told = TrialRecord(
            index=1,
            architecture=candidates[1].architecture,
            name="exp-00001",
            phase="Succeeded",
            reward=reward(candidates[1].architecture),
            tell_sequence=0,
            asks_before_tell=2,
        )
        first, state = await client.tell(told)
        assert first and state.told == 1
        again, state = await client.tell(told)
        assert not again and state.told == 1
        # a restarted controller (a new instance) gets the history replayed and agrees
        history = [TrialRecord(index=0, architecture=candidates[0].architecture, name="exp-00000"), told]
        before = state.instance
        state = await client.replay("exp", SPEC, history)
        assert (state.asked, state.told, state.instance) == (2, 1, before)
        with pytest.raises(ControllerOutOfSync):
            await client.tell(TrialRecord(index=7, architecture={}, name="exp-00007", phase="Failed"))

    run(scenario)


def test_refusals_and_metrics() -> None:
    async def scenario(client: ControllerClient, server: TestServer, session: aiohttp.ClientSession) -> None:
        with pytest.raises(ControllerRefused) as err:
            await client.replay("exp", {**SPEC, "strategy": {"name": "nope"}}, [])
        assert err.value.code == "BadRequest"
        async with session.get(f"{client.endpoint.url}/metrics") as response:
            text = await response.text()
        assert 'kubenas_controller_requests_total{code="400",endpoint="/replay"} 1.0' in text
        assert "kubenas_controller_trials_asked 0.0" in text

    run(scenario)


def test_an_unreachable_controller_is_a_temporary_problem() -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            client = ControllerClient(session, Endpoint("127.0.0.1", 9, TOKEN), timeout=2)
            with pytest.raises(ControllerUnavailable):
                await client.health()

    asyncio.run(main())


def test_replay_payload_is_the_trial_spec_and_status() -> None:
    from kubenas.core.codec import record_from_wire, trial_wire

    rec = TrialRecord(
        index=3,
        architecture={"a": "x"},
        name="exp-00003",
        phase="Infeasible",
        reward=float("-inf"),
        metrics={"val_accuracy": 0.2},
        tell_sequence=1,
        asks_before_tell=4,
    )
    data: dict[str, Any] = trial_wire(rec, "exp")
    assert "reward" not in data["status"]  # JSON has no infinities
    assert {"tellSequence", "asksBeforeTell"} <= set(data["status"])
    back = record_from_wire(data)
    assert (back.index, back.phase, back.tell_sequence, back.asks_before_tell) == (3, "Infeasible", 1, 4)

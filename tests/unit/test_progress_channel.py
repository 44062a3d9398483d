"""The push channel: trainer pods post epochs to the controller with a per-trial credential, the
controller keeps them bounded, the operator reads them (long-poll), and the trainer's client never
holds a trial up when the controller is down."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from kubenas.controller.progress import BadPoint, ProgressStore, parse_point, trial_token
from kubenas.controller.server import make_app
from kubenas.operator.controller_client import ControllerClient, ControllerUnavailable, Endpoint
from kubenas_trainer.progress import ProgressChannel
from kubenas_trainer.report import Reporter

from .test_controller_server import TOKEN
from .test_controller_server import run as run_server


def run(scenario: Callable[[str, ControllerClient, aiohttp.ClientSession], Awaitable[None]]) -> None:
    """The controller app behind a real HTTP server (the harness of test_controller_server.py)."""

    async def adapted(client: ControllerClient, server: TestServer, session: aiohttp.ClientSession) -> None:
        await scenario(f"http://127.0.0.1:{server.port}", client, session)

    run_server(adapted)


async def post(session: aiohttp.ClientSession, url: str, body: dict, token: str) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.post(url + "/progress", json=body, headers=headers) as response:
        return response.status, await response.json()


# -- the store ---------------------------------------------------------------------------------
def test_the_store_keeps_growing_curves_only_and_stays_bounded() -> None:
    store = ProgressStore(capacity=5, per_trial=3, trials=2)
    assert store.add("exp-00000", 1, {"a": 1.0}) is not None
    assert store.add("exp-00000", 1, {"a": 2.0}) is None  # a repeated step
    assert store.add("exp-00000", 0, {"a": 2.0}) is None  # an older one
    assert store.add("exp-00000", 2, {}) is not None
    assert store.add("exp-00000", 3, {}) is not None
    assert store.add("exp-00000", 4, {}) is None  # the trial's quota is used
    assert [p.seq for p in store.since(0)[0]] == [1, 2, 3]
    for step in range(1, 4):
        store.add("exp-00001", step, {})
    assert len(store) == 5  # the oldest aged out
    found, dropped = store.since(0)
    assert [p.seq for p in found] == [2, 3, 4, 5, 6] and dropped
    assert store.since(4) == (store.since(0)[0][3:], False)
    assert store.since(6) == ([], False)
    store.add("exp-00002", 1, {})  # a third trial: the least recent one is forgotten
    assert store.add("exp-00000", 4, {}) is not None


def test_a_posted_point_is_checked_field_by_field() -> None:
    trial, step, metrics = parse_point(
        {"trial": "exp-00003", "step": 2, "metrics": {"acc": 0.5, "n": 3, "bad": float("nan"), "ok": True, "s": "x"}}
    )
    assert (trial, step, metrics) == ("exp-00003", 2, {"acc": 0.5, "n": 3.0})
    with pytest.raises(BadPoint, match="trial"):
        parse_point({"trial": "Not A Name", "step": 1, "metrics": {}})
    with pytest.raises(BadPoint, match="step"):
        parse_point({"trial": "exp-00003", "step": -1, "metrics": {}})
    with pytest.raises(BadPoint, match="metrics"):
        parse_point({"trial": "exp-00003", "step": 1, "metrics": [1]})
    many = parse_point({"trial": "t", "step": 1, "metrics": {f"m{i}": i for i in range(100)}})[2]
    assert len(many) == 32


def test_each_trial_has_its_own_credential() -> None:
    assert trial_token(TOKEN, "exp-00001") != trial_token(TOKEN, "exp-00002")
    assert trial_token(TOKEN, "exp-00001") != trial_token("other", "exp-00001")
    assert TOKEN not in trial_token(TOKEN, "exp-00001")


# -- the controller's endpoints ------------------------------------------------------------------
def test_a_trial_reports_only_for_itself_and_only_the_operator_reads() -> None:
    async def scenario(url: str, client: ControllerClient, session: aiohttp.ClientSession) -> None:
        point = {"trial": "exp-00001", "step": 1, "metrics": {"val_accuracy": 0.4}}
        assert (await post(session, url, point, trial_token(TOKEN, "exp-00001")))[0] == 200
        # another trial's credential, the controller token itself, none at all: refused
        for token in (trial_token(TOKEN, "exp-00002"), TOKEN, ""):
            status, body = await post(session, url, {**point, "step": 2}, token)
            assert status == 401 and body["error"]["code"] == "Unauthorized"
        # a trial's credential cannot ask, tell, replay or read points
        trial_client = ControllerClient(
            session, Endpoint("127.0.0.1", client.endpoint.port, trial_token(TOKEN, "exp-00001"))
        )
        with pytest.raises(ControllerUnavailable, match="bearer token"):
            await trial_client.points(None, 0)
        with pytest.raises(ControllerUnavailable, match="bearer token"):
            await trial_client.ask(0, 1)
        found, dropped, state = await client.points(None, 0)
        assert [(p.trial, p.step, dict(p.metrics)) for p in found] == [("exp-00001", 1, {"val_accuracy": 0.4})]
        assert not dropped and not state.configured  # the channel works before any replay
        status, body = await post(session, url, {"trial": "exp-00001", "step": "x", "metrics": {}}, "")
        assert status == 400 and "step" in body["error"]["message"]

    run(scenario)


def test_the_operator_reads_from_its_cursor_and_a_read_waits_for_the_next_point() -> None:
    async def scenario(url: str, client: ControllerClient, session: aiohttp.ClientSession) -> None:
        token = trial_token(TOKEN, "exp-00000")
        for step in (1, 2):
            await post(session, url, {"trial": "exp-00000", "step": step, "metrics": {"v": step}}, token)
        found, _, state = await client.points(None, 0)
        assert [p.step for p in found] == [1, 2]
        assert (await client.points(state.instance, found[-1].seq))[0] == []
        # another instance's cursor (a restarted controller): everything from the start
        assert [p.step for p in (await client.points("elsewhere", 2))[0]] == [1, 2]

        started = time.monotonic()
        waiting = asyncio.create_task(client.points(state.instance, 2, wait=10))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await post(session, url, {"trial": "exp-00000", "step": 3, "metrics": {"v": 3}}, token)
        found, _, _ = await asyncio.wait_for(waiting, 5)
        assert [p.step for p in found] == [3] and time.monotonic() - started < 5
        # a repeated step is answered but not kept
        status, body = await post(session, url, {"trial": "exp-00000", "step": 3, "metrics": {}}, token)
        assert status == 200 and body == {"kept": False}
        text = await (await session.get(url + "/metrics")).text()
        assert 'kubenas_controller_progress_points_total{outcome="kept"} 3.0' in text
        assert 'kubenas_controller_progress_points_total{outcome="ignored"} 1.0' in text

    run(scenario)


# -- the trainer's client ------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_trainer_posts_through_the_first_address_that_answers() -> None:
    async def scenario(url: str, client: ControllerClient, session: aiohttp.ClientSession) -> None:
        dead = f"http://127.0.0.1:{closed_port()}"
        channel = ProgressChannel([dead, url], trial_token(TOKEN, "exp-00004"), "exp-00004", backoff=0.01)
        for epoch in (1, 2, 3):
            channel.send(epoch, {"val_accuracy": epoch / 10, "lr": 0.1, "skip": float("inf")})
        await asyncio.get_running_loop().run_in_executor(None, channel.close, 10.0)
        assert (channel.sent, channel.dropped) == (3, 0)
        found, _, _ = await client.points(None, 0)
        assert [(p.step, dict(p.metrics)) for p in found] == [
            (e, {"val_accuracy": e / 10, "lr": 0.1}) for e in (1, 2, 3)
        ]

    run(scenario)


def test_the_trainers_epoch_events_go_to_stdout_and_to_the_channel() -> None:
    async def scenario(url: str, client: ControllerClient, session: aiohttp.ClientSession) -> None:
        env = {
            "KUBENAS_PROGRESS_URL": url,
            "KUBENAS_PROGRESS_TOKEN": trial_token(TOKEN, "exp-00002"),
            "KUBENAS_TRIAL": "exp-00002",
        }
        stream = io.StringIO()
        reporter = Reporter(stream=stream, channel=ProgressChannel.from_env(env))
        reporter.event("start", trial="exp-00002")
        reporter.event("epoch", epoch=1, metrics={"val_accuracy": 0.25, "train_loss": 2.0})
        await asyncio.get_running_loop().run_in_executor(None, reporter.close, 10.0)
        assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["start", "epoch"]
        found, _, _ = await client.points(None, 0)
        assert [(p.trial, p.step, dict(p.metrics)) for p in found] == [
            ("exp-00002", 1, {"val_accuracy": 0.25, "train_loss": 2.0})
        ]

    run(scenario)


def test_a_trainer_whose_controller_is_down_goes_on_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    env = {
        "KUBENAS_PROGRESS_URL": f"http://127.0.0.1:{closed_port()}",
        "KUBENAS_PROGRESS_TOKEN": "t",
        "KUBENAS_TRIAL": "exp-00000",
    }
    channel = ProgressChannel.from_env(env, backoff=0.01, timeout=0.5)
    assert channel is not None
    started = time.monotonic()
    for epoch in range(1, 6):
        channel.send(epoch, {"val_accuracy": 0.5})
    assert time.monotonic() - started < 0.1  # sending never waits on the network
    channel.close(timeout=5.0)
    assert channel.dropped == 5 and channel.sent == 0
    assert capsys.readouterr().err.count("unreachable") == 1  # one line, not one per epoch
    assert ProgressChannel.from_env({"KUBENAS_TRIAL": "exp-00000"}) is None  # local mode: stdout only


def test_a_refused_report_is_not_retried() -> None:
    async def scenario(url: str, client: ControllerClient, session: aiohttp.ClientSession) -> None:
        channel = ProgressChannel([url], "wrong", "exp-00004", backoff=1.0)
        channel.send(1, {"v": 1.0})
        started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, channel.close, 10.0)
        assert channel.dropped == 1 and time.monotonic() - started < 1.0

    run(scenario)


def test_a_waiting_read_does_not_hold_the_controllers_shutdown_up() -> None:
    async def main() -> None:
        server = TestServer(make_app(TOKEN, "exp"), host="127.0.0.1")
        await server.start_server()
        async with aiohttp.ClientSession() as session:
            client = ControllerClient(session, Endpoint("127.0.0.1", server.port or 0, TOKEN), timeout=10)
            waiting = asyncio.create_task(client.points(None, 0, wait=25))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await server.close()
            found, _, _ = await asyncio.wait_for(waiting, 5)
            assert found == [] and time.monotonic() - started < 5

    asyncio.run(main())

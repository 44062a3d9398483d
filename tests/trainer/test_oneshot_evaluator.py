"""The one-shot evaluator pod's HTTP bridge (``kubenas controller evaluator``) around the real evaluate command.

A tiny supernet is trained on the synthetic set; the bridge starts ``kubenas_trainer.oneshot evaluate``
on it, is ready only once the supernet is loaded, answers each candidate as the command answers it
(a refused one as a bad candidate), needs the token, and starts the command again after it died.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from kubenas.controller.cli import TOKEN_ENV
from kubenas.controller.evaluator import LOAD_FAILED_EXIT, PROCESS_KEY, make_app
from kubenas.operator.controller_client import ControllerClient, ControllerUnavailable, Endpoint
from kubenas_trainer.oneshot import Evaluator, main, train_supernet
from kubenas_trainer.settings import resolve_settings
from tests.trainer.test_oneshot_run import SETTINGS

SPACE = {"cell": {"nodes": 3, "operations": ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"]}}
ARCH = {"edge_1_0": "nor_conv_3x3", "edge_2_0": "skip_connect", "edge_2_1": "nor_conv_1x1"}


def test_the_bridge_scores_candidates_with_the_evaluate_command(tmp_path: Path) -> None:
    settings, _ = resolve_settings(SETTINGS, {})
    train_supernet(SPACE, settings, 1, tmp_path)
    expected = Evaluator(tmp_path, 2).evaluate(ARCH)["val_accuracy"]
    command = [sys.executable, "-m", "kubenas_trainer.oneshot", "evaluate", "--checkpoint", str(tmp_path)]

    async def main() -> None:
        app = make_app("tok", [*command, "--recalibration-batches", "2"])
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{server.port}/health"
                for _ in range(600):
                    async with session.get(url) as response:
                        if response.status == 200:
                            break
                    await asyncio.sleep(0.1)
                assert response.status == 200  # ready: the supernet is loaded
                client = ControllerClient(session, Endpoint("127.0.0.1", server.port or 0, "tok"))
                answer = await client.evaluate(0, ARCH)
                assert answer["exitCode"] == 0 and answer["index"] == 0
                assert answer["result"]["val_accuracy"] == pytest.approx(expected, abs=1e-6)
                refused = await client.evaluate(1, {**ARCH, "edge_1_0": "bogus"})
                assert refused["exitCode"] == 3 and refused["result"]["status"] == "bad_candidate"
                with pytest.raises(ControllerUnavailable, match="bearer token"):
                    await ControllerClient(session, Endpoint("127.0.0.1", server.port or 0, "wrong")).evaluate(2, ARCH)
                process = app[PROCESS_KEY]
                assert process.proc is not None
                process.proc.kill()  # the command dies: the next request starts it again
                await process.proc.wait()
                again = await client.evaluate(3, ARCH)
                assert again["exitCode"] == 0 and again["result"]["val_accuracy"] == answer["result"]["val_accuracy"]
                assert process.starts == 2
        finally:
            await server.close()

    asyncio.run(main())


def test_an_evaluate_command_that_cannot_load_the_checkpoint_stops_the_bridge(tmp_path: Path) -> None:
    """No supernet in the folder: the command dies while loading, the bridge never turns ready and
    reports the failure once, quoting the command's error (the command line then exits non-zero),
    instead of waiting for ever."""
    command = [sys.executable, "-m", "kubenas_trainer.oneshot", "evaluate", "--checkpoint", str(tmp_path / "none")]

    async def main() -> None:
        failed: asyncio.Queue[str] = asyncio.Queue()
        app = make_app("tok", command, failed.put_nowait)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            message = await asyncio.wait_for(failed.get(), 120)
            process = app[PROCESS_KEY]
            assert process.starts == 1 and not process.loaded and process.load_exit not in (0, None)
            assert message.startswith(f"the evaluate command exited with code {process.load_exit} before it loaded")
            assert f"cannot load the supernet in {tmp_path / 'none'}" in message  # the command's own words
            url = f"http://127.0.0.1:{server.port}/health"
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                assert response.status == 503
                assert (await response.json())["loadExit"] == process.load_exit
        finally:
            await server.close()
        assert failed.empty()

    asyncio.run(main())


def test_the_evaluator_command_exits_non_zero_when_the_checkpoint_cannot_be_loaded(tmp_path: Path) -> None:
    """``kubenas controller evaluator``: the pod's container fails (and restarts), its termination
    message saying why."""
    env = {**os.environ, TOKEN_ENV: "tok"}
    evaluate = [sys.executable, "-m", "kubenas_trainer.oneshot", "evaluate", "--checkpoint", str(tmp_path / "none")]
    message = tmp_path / "termination-log"
    argv = [sys.executable, "-m", "kubenas.controller", "evaluator", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--message-file", str(message)]
    done = subprocess.run([*argv, "--", *evaluate], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == LOAD_FAILED_EXIT, done.stderr[-2000:]
    assert "cannot load the supernet" in done.stderr  # the command's stderr still reaches the pod's log
    assert "before it loaded the supernet: kubenas-trainer oneshot: cannot load" in message.read_text()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--finetune-lr", "-1"),
        ("--finetune-lr", "0"),
        ("--finetune-lr", "nan"),
        ("--finetune-steps", "-5"),
        ("--recalibration-batches", "0"),
        ("--recalibration-batches", "-1"),
    ],
)
def test_evaluate_refuses_out_of_range_options(tmp_path: Path, capsys, option: str, value: str) -> None:
    """They crashed (a negative LR), or scored every candidate silently wrong (no recalibration, steps < 0)."""
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--checkpoint", str(tmp_path), option, value])
    assert info.value.code == 2
    assert option in capsys.readouterr().err

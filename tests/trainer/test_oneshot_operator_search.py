"""Phase 2 of a one-shot search through the operator's reconciler, with the real evaluator.

The reconciler runs against the in-memory API server of the reconciler unit tests, with the real
controller service and the real evaluator bridge around ``kubenas_trainer.oneshot evaluate`` on a
supernet trained here (the test plays the kubelet: it ends the supernet Job's pod and starts the
evaluator). A run whose operator is replaced mid-search, and whose record write fails once, must end
with the same evaluation record and the same retrained architectures as an unbroken run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from kubenas.controller.evaluator import make_app
from kubenas.operator.kube import ApiError
from kubenas.operator.oneshot_manifests import read_record
from kubenas.operator.views import EndpointView
from kubenas_trainer.oneshot import train_supernet
from kubenas_trainer.settings import resolve_settings
from tests.trainer.test_oneshot_run import SETTINGS
from tests.unit.test_controller_reconciler import (
    World,
    drive,
    exp_status,
    one_shot,
    scenario,
    settle,
    started,
    step,
    trials,
)
from tests.unit.test_controller_service import SPEC

EVALUATIONS = 45


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("supernet")
    settings, _ = resolve_settings(SETTINGS, {})
    train_supernet(SPEC["searchSpace"], settings, 7, out)
    return out


def run(checkpoint: Path, restart_after: int | None) -> tuple[list[Any], list[dict[str, Any]], int]:
    """A one-shot search to its end; with ``restart_after``, a new reconciler after that many phase-2
    passes and one refused record write. Returns the record, the Trials' architectures, the passes."""
    out: dict[str, Any] = {}

    async def body(world: World) -> None:
        one_shot(world)["spec"]["oneShot"]["evaluations"] = EVALUATIONS
        rec = await started(world)
        await step(rec)  # the supernet Job is created
        await world.run_pods()  # ... and its pod ends with a result
        await step(rec)  # phase 2 starts: the evaluator's objects are created
        await settle(rec)
        assert exp_status(world)["oneShot"]["phase"] == "Search"
        command = [sys.executable, "-m", "kubenas_trainer.oneshot", "evaluate", "--checkpoint", str(checkpoint)]
        token = rec.token or ""
        server = TestServer(make_app(token, command), host="127.0.0.1")
        await server.start_server()
        world.servers.append(server)
        world.endpoint.append(EndpointView("exp-evaluator-x", "exp-evaluator", ("127.0.0.1",), server.port))
        patch = world.api.patch
        refused = []

        async def refuse_once(api_version: str, kind: str, *args: Any, **kw: Any) -> Any:
            if kind == "ConfigMap" and not refused:
                refused.append(kind)
                raise ApiError(503, "ServiceUnavailable", "etcd is slow")
            return await patch(api_version, kind, *args, **kw)

        passes = 0
        while exp_status(world).get("oneShot", {}).get("phase") != "Retrain" and passes < 40:
            passes += 1
            await rec._pass()  # as the loop runs it: a failed pass is retried by the next one
            await rec.writes.done()
            await settle(rec)
            if restart_after is not None and passes == restart_after:
                world.api.patch = refuse_once  # type: ignore[method-assign]
                rec = world.reconciler()  # the operator replaced: everything from the objects
        assert refused or restart_after is None
        await drive(world, rec, passes=20)
        await settle(rec)
        assert exp_status(world)["phase"] == "Succeeded", exp_status(world)
        out["record"] = read_record(world.api.of_kind("ConfigMap"))
        out["trials"] = [t["spec"]["architecture"] for t in trials(world)]
        out["passes"] = passes

    scenario({"maxTrials": 2, "parallelTrials": 2}, body)
    return out["record"], out["trials"], out["passes"]


def test_a_replaced_operator_and_a_refused_write_end_with_the_record_of_an_unbroken_run(checkpoint: Path) -> None:
    record, retrained, passes = run(checkpoint, None)
    assert [e.index for e in record] == list(range(EVALUATIONS)) and passes >= 3  # 20 a pass at most
    assert len(retrained) == 2
    again, retrained_again, _ = run(checkpoint, restart_after=2)
    key = [(e.index, dict(e.architecture), e.phase, e.reward, e.tell_sequence) for e in record]
    assert [(e.index, dict(e.architecture), e.phase, e.reward, e.tell_sequence) for e in again] == key
    assert retrained_again == retrained

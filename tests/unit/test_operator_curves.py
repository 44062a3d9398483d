"""The reconciler's side of the push channel: reported epochs become curves in Trial status, a trial
the stopping rule ends becomes Pruned and its Job goes, and restarts of either process keep it right.

Same harness as test_controller_reconciler.py: an in-memory API server, the real controller behind a
real HTTP server, and trainers played by the test, which post to the address and with the credential
their Job's environment names.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from kubenas.api.v1alpha1 import API_VERSION, SearchExperimentSpec
from kubenas.controller.progress import trial_token
from kubenas.core.driver import Driver
from kubenas.core.search import Search
from kubenas.operator import names
from kubenas.operator.reconciler import ExperimentReconciler
from kubenas.operator.views import TrialView

from .test_controller_reconciler import NS, FakeApi, World, experiment, settle, started, step

BUDGET = {"maxTrials": 4, "parallelTrials": 2}
MEDIAN = {"rule": "median", "startupTrials": 1}


class CurveWorld(World):
    """The harness's world; its reconcilers are stopped at the end (their feeds hold a long-poll open)."""

    def __init__(self, api: FakeApi) -> None:
        super().__init__(api, BUDGET)
        self.reconcilers: list[ExperimentReconciler] = []

    def reconciler(self) -> ExperimentReconciler:
        self.reconcilers.append(super().reconciler())
        return self.reconcilers[-1]

    async def close(self) -> None:
        for rec in self.reconcilers:
            await rec.stop()
        await super().close()


def run(early_stopping: Mapping[str, Any], body: Callable[[CurveWorld], Awaitable[None]]) -> None:
    async def main() -> None:
        api = FakeApi()
        manifest = experiment(BUDGET)
        manifest["spec"]["earlyStopping"] = dict(early_stopping)
        await api.create(manifest)
        api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]["metadata"]["uid"] = "uid-exp"
        world = CurveWorld(api)
        try:
            await body(world)
        finally:
            await world.close()

    asyncio.run(main())


def job_env(world: World, trial: str) -> dict[str, str]:
    job = world.api.objects[("batch/v1", "Job", NS, trial)]
    return {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


async def report(
    world: World, trial: str, points: list[tuple[int, float]], env: Mapping[str, str] | None = None
) -> None:
    """The trainer of ``trial`` posts these epochs, as kubenas-trainer does, with what its Job gives it."""
    env = env or job_env(world, trial)
    url = env[names.PROGRESS_URL_ENV].split()[0]
    headers = {"Authorization": f"Bearer {env[names.PROGRESS_TOKEN_ENV]}"}
    async with aiohttp.ClientSession() as session:
        for epoch, value in points:
            body = {"trial": trial, "step": epoch, "metrics": {"val_accuracy": value, "train_loss": 1 - value}}
            async with session.post(url + "/progress", json=body, headers=headers) as response:
                assert response.status == 200, await response.text()


async def arrived(rec: ExperimentReconciler, count: int) -> None:
    """Wait until the operator's feed holds ``count`` reports (it long-polls the controller)."""
    for _ in range(500):
        if len(rec.feed.pending) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(rec.feed.pending)} reports arrived, expected {count}")


async def curves_written(rec: ExperimentReconciler) -> None:
    await rec.writes.done()
    while rec.writes.curves:
        await asyncio.gather(*rec.writes.curves.values(), return_exceptions=True)


def trial(world: World, name: str) -> dict[str, Any]:
    return world.api.objects[(API_VERSION, "Trial", NS, name)]


async def trials_running(world: World) -> ExperimentReconciler:
    """The controller up and the first two trials' Jobs created."""
    rec = await started(world)
    await step(rec)
    return rec


def test_trainer_jobs_name_the_controller_and_carry_only_their_own_credential() -> None:
    async def body(world: CurveWorld) -> None:
        rec = await trials_running(world)
        token = rec.token
        assert token is not None
        for name in ("exp-00000", "exp-00001"):
            env = job_env(world, name)
            port = world.endpoint[0].port
            assert env[names.PROGRESS_URL_ENV].split() == [
                f"http://127.0.0.1:{port}",  # the pod IP the operator reaches
                f"http://exp-controller.{NS}.svc:{names.CONTROLLER_PORT}",  # where the cluster has DNS
            ]
            assert env[names.PROGRESS_TOKEN_ENV] == trial_token(token, name)
            assert token not in json.dumps(world.api.objects[("batch/v1", "Job", NS, name)])

    run(MEDIAN, body)


def test_reported_epochs_become_the_running_trials_curve_in_its_status() -> None:
    async def body(world: CurveWorld) -> None:
        rec = await trials_running(world)
        await report(world, "exp-00000", [(1, 0.3), (2, 0.5)])
        await report(world, "exp-00001", [(1, 0.4)])
        await arrived(rec, 3)
        writes = world.api.writes
        await step(rec)
        await curves_written(rec)
        status = trial(world, "exp-00000")["status"]
        assert status["curve"] == [{"step": 1, "value": 0.3}, {"step": 2, "value": 0.5}]
        assert set(status) == {"curve"}  # still running: only the curve was written
        assert trial(world, "exp-00001")["status"]["curve"] == [{"step": 1, "value": 0.4}]
        assert world.api.writes - writes == 2  # one write per trial, however many points it brought
        # a point seen again (a trainer retrying a post) and an older step change nothing
        await report(world, "exp-00000", [(3, 0.6)])
        await arrived(rec, 1)
        rec.feed.pending.extend(rec.feed.pending * 2)
        await step(rec)
        await curves_written(rec)
        assert [p["step"] for p in trial(world, "exp-00000")["status"]["curve"]] == [1, 2, 3]
        # the result carries the whole curve
        assert await world.run_pods(most=1) == 1  # exp-00000 ends with its result
        await step(rec)
        status = trial(world, "exp-00000")["status"]
        assert status["phase"] == "Succeeded" and [p["step"] for p in status["curve"]] == [1, 2, 3]

    run(MEDIAN, body)


def test_a_pruned_trial_keeps_its_partial_result_and_its_job_goes() -> None:
    async def body(world: CurveWorld) -> None:
        rec = await trials_running(world)
        await report(world, "exp-00000", [(1, 0.6), (2, 0.7)])
        await arrived(rec, 2)
        await step(rec)
        assert await world.run_pods(most=1) == 1  # exp-00000 ends: the median rule may now judge
        await step(rec)
        assert trial(world, "exp-00000")["status"]["phase"] == "Succeeded"
        assert ("batch/v1", "Job", NS, "exp-00001") in world.api.objects
        env = job_env(world, "exp-00001")
        await report(world, "exp-00001", [(1, 0.1)])  # below the finished trial's 0.6 at step 1
        await arrived(rec, 1)
        await step(rec)
        status = trial(world, "exp-00001")["status"]
        assert (status["phase"], status["reason"]) == ("Pruned", "EarlyStopped")
        assert status["metrics"] == {"val_accuracy": 0.1, "train_loss": 0.9}
        assert status["curve"] == [{"step": 1, "value": 0.1}]
        assert status["tellSequence"] == 1 and "median" in status["message"]
        assert ("batch/v1", "Job", NS, "exp-00001") not in world.api.objects  # its pod goes with it
        assert rec.driver is not None and rec.driver.counts.pruned == 1
        # the freed slot goes to the next candidate, and the controller was told the partial result
        assert {t["metadata"]["name"] for t in world.api.of_kind("Trial")} >= {"exp-00002", "exp-00003"}
        await settle(rec)
        assert (world.api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]["status"]["trials"]["pruned"]) == 1
        # late reports of the pruned trial change nothing
        await report(world, "exp-00001", [(2, 0.9)], env)
        await arrived(rec, 1)
        await step(rec)
        assert trial(world, "exp-00001")["status"]["curve"] == [{"step": 1, "value": 0.1}]

        # the stored history replays: the controller's strategy and the driver's stopping rule
        records = [TrialView.parse(t).record() for t in world.api.of_kind("Trial")]
        spec = SearchExperimentSpec.model_validate(
            world.api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]["spec"]
        )
        Search(spec, records)
        assert Driver(spec, records, name_prefix="exp").counts.pruned == 1

    run(MEDIAN, body)


def test_a_restarted_operator_ends_the_job_of_a_trial_stored_as_pruned() -> None:
    async def body(world: CurveWorld) -> None:
        first = await trials_running(world)
        await report(world, "exp-00000", [(1, 0.6)])
        await arrived(first, 1)
        await step(first)
        assert await world.run_pods(most=1) == 1  # exp-00000 ends with its result
        await step(first)
        job = dict(world.api.objects[("batch/v1", "Job", NS, "exp-00001")])

        async def no_delete(*args: Any, **kwargs: Any) -> None:
            raise aiohttp.ClientConnectionError("the operator died before the Job was deleted")

        world.api.delete = no_delete  # type: ignore[method-assign]
        await report(world, "exp-00001", [(1, 0.1)])
        await arrived(first, 1)
        await step(first)
        assert trial(world, "exp-00001")["status"]["phase"] == "Pruned"
        assert world.api.objects[("batch/v1", "Job", NS, "exp-00001")] == job  # still running
        await first.stop()
        del world.api.delete  # the API server works again

        second = world.reconciler()  # a new process: nothing in memory
        await step(second)
        for _ in range(100):
            if ("batch/v1", "Job", NS, "exp-00001") not in world.api.objects:
                break
            await asyncio.sleep(0.01)
        assert ("batch/v1", "Job", NS, "exp-00001") not in world.api.objects
        assert ("batch/v1", "Job", NS, "exp-00000") in world.api.objects  # a finished, unpruned trial's stays

    run(MEDIAN, body)


def test_after_a_controller_restart_the_feed_reads_the_new_one_from_its_start() -> None:
    async def body(world: CurveWorld) -> None:
        rec = await trials_running(world)
        await report(world, "exp-00000", [(1, 0.3), (2, 0.4)])
        await arrived(rec, 2)
        await step(rec)
        await world.controller_up()  # a new pod, a new address, an empty store
        await step(rec)  # replays the controller and follows it
        # trainers started before the restart post to the old address: those epochs are lost; new
        # Jobs and retried posts reach the new controller (its numbering starts again at 1)
        port = world.endpoint[0].port
        assert job_env(world, "exp-00000")[names.PROGRESS_URL_ENV].split()[0] != f"http://127.0.0.1:{port}"
        token = trial_token(rec.token or "", "exp-00000")
        async with aiohttp.ClientSession() as session:
            body = {"trial": "exp-00000", "step": 3, "metrics": {"val_accuracy": 0.5}}
            headers = {"Authorization": f"Bearer {token}"}
            async with session.post(f"http://127.0.0.1:{port}/progress", json=body, headers=headers) as response:
                assert response.status == 200
        await arrived(rec, 1)
        assert rec.feed.pending[0].seq == 1
        await step(rec)
        await curves_written(rec)
        assert [p["step"] for p in trial(world, "exp-00000")["status"]["curve"]] == [1, 2, 3]

    run(MEDIAN, body)

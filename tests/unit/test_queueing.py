"""Kueue groundwork: ``spec.queueName`` puts trainer Jobs in a LocalQueue, suspended; the operator counts a
suspended Job's trial as waiting (pending, neither running nor failed). No Kueue runs here: admission
and preemption are played by flipping ``spec.suspend`` on the Jobs of the in-memory API server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import ValidationError

from kubenas.api.v1alpha1 import API_VERSION, SearchExperimentSpec
from kubenas.operator import manifests, names, outcomes
from kubenas.operator.kube import KUEUE_API_VERSION
from kubenas.operator.status import queued_counts
from kubenas.operator.views import JobView, PodView

from .test_controller_reconciler import NS, FakeApi, World, exp_status, experiment, settle, started, step
from .test_controller_service import SPEC

QUEUE = "team-a-gpus"
EXP = manifests.ExperimentRef(NS, "exp", "uid-exp")


def spec(**extra: Any) -> SearchExperimentSpec:
    return SearchExperimentSpec.model_validate({**SPEC, "budget": {"maxTrials": 4, "parallelTrials": 2}, **extra})


def job(s: SearchExperimentSpec) -> dict[str, Any]:
    trial = manifests.trial_object(EXP, s, 0, {"edge_1_0": "none"}, "edge_1_0=none")
    return manifests.trainer_job(EXP, s, trial)


def test_a_queue_name_labels_the_job_for_kueue_and_creates_it_suspended() -> None:
    queued = job(spec(queueName=QUEUE))
    assert queued["metadata"]["labels"][manifests.KUEUE_QUEUE_LABEL] == QUEUE
    assert queued["spec"]["suspend"] is True
    plain = job(spec())
    assert manifests.KUEUE_QUEUE_LABEL not in plain["metadata"]["labels"] and "suspend" not in plain["spec"]


def test_a_queue_name_must_be_a_label_value() -> None:
    with pytest.raises(ValidationError, match="queueName"):
        spec(queueName="not a queue!")
    with pytest.raises(ValidationError, match="queueName"):
        spec(queueName="q" * 64)


def _pod(exit_code: int, message: dict[str, Any]) -> PodView:
    terminated = {"exitCode": exit_code, "message": json.dumps(message)}
    return PodView.parse(
        {
            "metadata": {"name": "exp-00000-a", "labels": {names.LABEL_TRIAL: "exp-00000"}},
            "status": {"containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}]},
        }
    )


def test_a_suspended_job_is_waiting_whatever_its_stopped_pods_said() -> None:
    body = job(spec(queueName=QUEUE))
    body["metadata"]["uid"] = "uid-job"
    suspended = JobView.parse(body)
    assert suspended.suspended
    partial = _pod(0, {"val_accuracy": 0.4, "status": "partial"})  # the pod Kueue's preemption stopped
    assert outcomes.events_of(0, [partial], suspended) == []
    admitted = JobView.parse({**body, "spec": {**body["spec"], "suspend": False}})
    assert not admitted.suspended and outcomes.decided(outcomes.events_of(0, [partial], admitted))
    failed = JobView.parse({**body, "status": {"conditions": [{"type": "Failed", "status": "True"}]}})
    assert outcomes.decided(outcomes.events_of(0, [], failed))  # the Job's own verdict still counts


async def _admit(world: World, count: int) -> list[str]:
    """Kueue's part: unsuspend ``count`` suspended Jobs (oldest first); ``World.run_pods`` is the job
    controller's (pods for admitted Jobs only)."""
    admitted = []
    for body in world.api.of_kind("Job"):
        if len(admitted) < count and body["spec"].get("suspend"):
            body["spec"]["suspend"] = False
            admitted.append(body["metadata"]["name"])
    return admitted


async def with_local_queue(api: FakeApi) -> FakeApi:
    """The LocalQueue the experiments name: the operator fails an experiment whose queue does not exist."""
    await api.create(
        {"apiVersion": KUEUE_API_VERSION, "kind": "LocalQueue", "metadata": {"name": QUEUE, "namespace": NS}}
    )
    return api


def test_the_operator_counts_suspended_trials_as_waiting_until_admitted() -> None:
    async def main() -> None:
        api = await with_local_queue(FakeApi())
        body = experiment({"maxTrials": 3, "parallelTrials": 2})
        body["spec"]["queueName"] = QUEUE
        await api.create(body)
        api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]["metadata"]["uid"] = "uid-exp"
        world = World(api, body["spec"]["budget"])
        try:
            rec = await started(world)
            await step(rec)
            await step(rec)  # the Jobs are in the index now: the pass sees them suspended
            await settle(rec)
            jobs = api.of_kind("Job")
            assert len(jobs) == 2 and all(j["spec"]["suspend"] for j in jobs)
            counts = exp_status(world)["trials"]
            assert (counts["pending"], counts["waiting"], counts["running"], counts["failed"]) == (2, 2, 0, 0)
            assert rec.runtime.metrics.trials.labels(NS, "exp", "Waiting")._value.get() == 2

            assert await _admit(world, 1) == ["exp-00000"]  # quota for one trial
            await world.run_pods()
            await step(rec)
            await step(rec)
            await settle(rec)
            counts = exp_status(world)["trials"]
            assert counts["succeeded"] == 1 and counts["failed"] == 0
            assert counts["waiting"] == 2 and counts["pending"] == 2  # exp-00001 still queued, exp-00002 new

            for _ in range(5):
                await _admit(world, 2)
                await world.run_pods()
                await step(rec)
                await settle(rec)
                if rec.final is not None:
                    break
            status = exp_status(world)
            assert status["phase"] == "Succeeded", status
            assert status["trials"]["succeeded"] == 3 and status["trials"]["waiting"] == 0
        finally:
            await world.close()

    asyncio.run(main())


def test_a_trainer_stopped_by_kueues_preemption_is_no_result_even_before_the_suspension_is_seen() -> None:
    body = job(spec(queueName=QUEUE))
    body["metadata"]["uid"] = "uid-job"
    body["spec"]["suspend"] = False  # admitted; the watch has not delivered Kueue's suspension yet
    admitted = JobView.parse(body)
    assert admitted.queued and not admitted.suspended
    stopped = _pod(0, {"val_accuracy": 0.4, "status": "partial"})
    stopped = PodView(**{**stopped.__dict__, "deleting": True})  # the Job controller deletes it (suspension)
    assert outcomes.events_of(0, [stopped], admitted) == []
    plain = JobView.parse({**body, "metadata": {**body["metadata"], "labels": {}}})
    assert not plain.queued and outcomes.decided(outcomes.events_of(0, [stopped], plain))  # no Kueue: as before
    complete = JobView.parse({**body, "status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    assert outcomes.decided(outcomes.events_of(0, [stopped], complete))  # the Job counted it: a result


def _turnarounds(rec: Any) -> float:
    value = rec.runtime.metrics.registry.get_sample_value(
        "kubenas_trial_turnaround_seconds_count", {"namespace": NS, "experiment": "exp"}
    )
    return value or 0.0


def test_with_a_queue_the_turnaround_ends_when_kueue_admits_the_next_trial_not_when_its_job_is_created() -> None:
    async def main() -> None:
        api = await with_local_queue(FakeApi())
        body = experiment({"maxTrials": 3, "parallelTrials": 1})
        body["spec"]["queueName"] = QUEUE
        await api.create(body)
        api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]["metadata"]["uid"] = "uid-exp"
        world = World(api, body["spec"]["budget"])
        try:
            rec = await started(world)
            await step(rec)
            await settle(rec)
            await _admit(world, 1)
            await world.run_pods()
            for pod in api.of_kind("Pod"):
                rec.note_termination(pod["metadata"]["uid"])  # the pod handler's part
            await step(rec)
            await step(rec)
            await settle(rec)
            jobs = {j["metadata"]["name"]: j for j in api.of_kind("Job")}
            assert jobs["exp-00001"]["spec"]["suspend"] is True  # the next trial's Job exists, queued
            assert _turnarounds(rec) == 0
            assert await _admit(world, 1) == ["exp-00001"]
            await step(rec)
            await settle(rec)
            assert _turnarounds(rec) == 1
        finally:
            await world.close()

    asyncio.run(main())


def test_a_preempted_trial_is_shown_waiting_and_pending_not_running() -> None:
    counts = {"pending": 1, "running": 2, "succeeded": 3, "failed": 0, "total": 6}
    # 2 Jobs suspended: one never admitted (pending), one preempted after it started (the driver's running)
    shown = queued_counts(counts, waiting=2, requeued=1)
    assert (shown["pending"], shown["running"], shown["waiting"]) == (2, 1, 2)
    assert shown["succeeded"] == 3 and shown["total"] == 6
    assert queued_counts(counts, waiting=0, requeued=0) == {**counts, "waiting": 0}


def test_kueues_label_on_the_pod_template_queues_the_trials_as_queue_name_does() -> None:
    labelled = spec(
        trialTemplate={
            **SPEC["trialTemplate"],
            "template": {
                "metadata": {"labels": {names.KUEUE_QUEUE_LABEL: QUEUE}},
                "spec": {"containers": [{"name": "trainer"}]},
            },
        }
    )
    assert labelled.queue() == QUEUE
    queued = job(labelled)
    assert queued["metadata"]["labels"][manifests.KUEUE_QUEUE_LABEL] == QUEUE and queued["spec"]["suspend"] is True
    assert spec(queueName=QUEUE, trialTemplate=labelled.trial_template.model_dump(by_alias=True)).queue() == QUEUE
    with pytest.raises(ValidationError, match="name different queues"):
        spec(queueName="other", trialTemplate=labelled.trial_template.model_dump(by_alias=True))

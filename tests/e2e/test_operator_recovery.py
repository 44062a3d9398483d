"""Crashes mid-run: the operator killed, the controller pod deleted. Nothing is lost or doubled and the
search goes on exactly as an unbroken run with the same seed would have."""

from __future__ import annotations

import json
import time
from typing import Any

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.driver import AttemptEnded, Driver
from kubenas.core.inprocess import InProcess
from kubenas.core.records import TrialRecord
from kubenas.core.search import Search
from kubenas.operator import names
from kubenas.operator.views import TrialView
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess, experiment_manifest, wait_for

from .test_operator_search import toy_accuracy

__all__ = ["crds", "kube", "kubenas_operator"]

EVOLUTION = {"name": "evolution", "seed": 11, "evolution": {"populationSize": 3, "sampleSize": 2}}


def unbroken_sequential(manifest: dict[str, Any]) -> list[TrialRecord]:
    """The trials of an uninterrupted one-at-a-time run, in-process: ask, train (toy), tell, repeat."""
    spec = SearchExperimentSpec.model_validate(manifest["spec"])
    spec = spec.model_copy(update={"budget": spec.budget.model_copy(update={"parallel_trials": 1})})
    driver = Driver(spec, name_prefix=manifest["metadata"]["name"])
    loop = InProcess(driver, Search(spec))
    loop.start()
    while loop.created:
        index = loop.created.popleft()
        result = json.dumps({"val_accuracy": toy_accuracy(dict(driver.trial(index).architecture))})
        loop.handle(AttemptEnded(index, 1, 0, result))
    return driver.trials


def succeeded(kube: Kube, name: str) -> int:
    return sum(1 for t in kube.trials(name) if (t.get("status") or {}).get("phase") == "Succeeded")


def assert_whole_history(kube: Kube, name: str, total: int) -> list[dict[str, Any]]:
    """Every trial once, one Job each, every result told once, and the history replays."""
    trials = kube.trials(name)
    assert [t["spec"]["index"] for t in trials] == list(range(total))
    jobs = sorted(j.metadata.name for j in kube.jobs(name))
    assert jobs == [t["metadata"]["name"] for t in trials]
    assert sorted(t["status"]["tellSequence"] for t in trials) == list(range(total))
    assert all(t["status"]["phase"] == "Succeeded" for t in trials)
    spec = SearchExperimentSpec.model_validate(kube.experiment(name)["spec"])  # type: ignore[index]
    Search(spec, [TrialView.parse(t).record() for t in trials])  # raises ReplayError if not
    return trials


def test_operator_killed_mid_run_loses_and_doubles_nothing(kube: Kube, kubenas_operator: OperatorProcess) -> None:
    manifest = experiment_manifest(
        "crash", max_trials=12, parallel=3, strategy={"name": "random", "seed": 5}, settings={"sleep_s": 0.4}
    )
    kube.apply_experiment(manifest)
    wait_for("four results", lambda: succeeded(kube, "crash") >= 4, timeout=120)
    kubenas_operator.kill()
    time.sleep(2.0)  # trials finish while no operator watches
    kubenas_operator.start()
    exp = kube.wait_phase("crash", timeout=240)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    trials = assert_whole_history(kube, "crash", 12)
    unbroken = unbroken_sequential(manifest)
    assert {t["spec"]["architectureId"] for t in trials} == {
        ",".join(f"{k}={v}" for k, v in r.architecture.items()) for r in unbroken
    }
    best = max(unbroken, key=lambda r: (r.reward, -r.index))
    assert exp["status"]["bestTrial"]["architecture"] == dict(best.architecture)
    assert exp["status"]["bestReward"] == best.reward


def test_controller_pod_deleted_mid_run_is_replayed_and_suggests_the_same(
    kube: Kube, kubenas_operator: OperatorProcess, namespace: str
) -> None:
    manifest = experiment_manifest("replay", max_trials=10, parallel=1, strategy=EVOLUTION)
    kube.apply_experiment(manifest)
    wait_for("five results", lambda: succeeded(kube, "replay") >= 5, timeout=120)
    (old,) = kube.pods(f"{names.LABEL_COMPONENT}=controller,{names.LABEL_EXPERIMENT}=replay")
    kube.core.delete_namespaced_pod(old.metadata.name, namespace, grace_period_seconds=0)
    exp = kube.wait_phase("replay", timeout=240)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    trials = assert_whole_history(kube, "replay", 10)
    unbroken = unbroken_sequential(manifest)
    assert [t["spec"]["architecture"] for t in trials] == [dict(r.architecture) for r in unbroken]
    assert "ControllerReplayed" in {e.reason for e in kube.events("replay")}
    labels = {"namespace": namespace, "experiment": "replay"}
    assert kubenas_operator.metric("kubenas_controller_replays_total", **labels) >= 2  # start + restart


def test_a_trainer_job_deleted_mid_run_is_created_again_and_the_search_ends(
    kube: Kube, kubenas_operator: OperatorProcess, namespace: str
) -> None:
    """A running trial's Job deleted (by hand, or by a cleanup) is created again, as a restarted operator
    would: the trial runs on and the search finishes, instead of waiting for ever for a Job that is gone."""
    manifest = experiment_manifest(
        "jobgone", max_trials=4, parallel=2, strategy={"name": "random", "seed": 3}, settings={"sleep_s": 3}
    )
    kube.apply_experiment(manifest)
    wait_for("a running trainer", lambda: any(p.status.phase == "Running" for p in kube.pods(_TRAINERS)), timeout=120)
    victim = next(p for p in kube.pods(_TRAINERS) if p.status.phase == "Running").metadata.labels[names.LABEL_TRIAL]
    kube.batch.delete_namespaced_job(victim, namespace, propagation_policy="Background")
    exp = kube.wait_phase("jobgone", timeout=240)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    assert_whole_history(kube, "jobgone", 4)
    assert "TrialJobDeleted" in {e.reason for e in kube.events("jobgone")}


_TRAINERS = f"{names.LABEL_COMPONENT}={names.COMPONENT_TRAINER},{names.LABEL_EXPERIMENT}=jobgone"


def test_a_trial_deleted_while_it_runs_is_written_again_with_its_result(
    kube: Kube, kubenas_operator: OperatorProcess, namespace: str
) -> None:
    """The Trials are the search's history: one deleted while its Job runs is created again when its
    result comes, so the search finishes whole (it waited for ever, and a restart found a gap)."""
    manifest = experiment_manifest(
        "trialgone", max_trials=4, parallel=2, strategy={"name": "random", "seed": 4}, settings={"sleep_s": 3}
    )
    kube.apply_experiment(manifest)
    selector = f"{names.LABEL_COMPONENT}={names.COMPONENT_TRAINER},{names.LABEL_EXPERIMENT}=trialgone"
    wait_for("a running trainer", lambda: any(p.status.phase == "Running" for p in kube.pods(selector)), timeout=120)
    victim = next(p for p in kube.pods(selector) if p.status.phase == "Running").metadata.labels[names.LABEL_TRIAL]
    kube.custom.delete_namespaced_custom_object("kubenas.io", "v1alpha1", namespace, "trials", victim)
    exp = kube.wait_phase("trialgone", timeout=240)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    assert_whole_history(kube, "trialgone", 4)
    assert "TrialRecreated" in {e.reason for e in kube.events("trialgone")}

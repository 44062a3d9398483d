"""A search run end to end by the operator on the development cluster, with the toy (table) trial."""

from __future__ import annotations

from typing import Any

from kubenas.local.toy_trial import score
from kubenas.operator import names
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess, condition, experiment_manifest, wait_for

__all__ = ["crds", "kube", "kubenas_operator"]


def toy_accuracy(architecture: dict[str, Any]) -> float:
    """What the toy trial reports for an architecture (no noise)."""
    return min(0.999, max(0.001, 0.5 + 0.49 * score(architecture)))


def test_twelve_trials_three_at_a_time_finish_with_the_right_best(
    kube: Kube, kubenas_operator: OperatorProcess, cluster: Any, namespace: str
) -> None:
    kube.apply_experiment(experiment_manifest("toy", max_trials=12, parallel=3))
    exp = kube.wait_phase("toy", timeout=240)
    status = exp["status"]
    assert status["phase"] == "Succeeded", status
    assert condition(exp, "Succeeded")["reason"] == "MaxTrialsReached"
    assert condition(exp, "Running")["status"] == "False"
    assert status["trials"]["succeeded"] == 12 and status["trials"]["total"] == 12
    assert status["progress"] == "12/12"
    assert status["observedGeneration"] == exp["metadata"]["generation"]

    trials = kube.trials("toy")
    assert [t["metadata"]["name"] for t in trials] == [f"toy-{i:05d}" for i in range(12)]
    expected = {t["metadata"]["name"]: toy_accuracy(t["spec"]["architecture"]) for t in trials}
    for t in trials:
        assert t["status"]["phase"] == "Succeeded"
        assert t["status"]["metrics"]["val_accuracy"] == expected[t["metadata"]["name"]]
    best = max(expected, key=lambda name: (expected[name], -int(name[-5:])))
    assert status["bestTrial"]["name"] == best
    assert status["bestReward"] == expected[best]
    assert sorted(t["status"]["tellSequence"] for t in trials) == list(range(12))

    # never more than parallelTrials in flight: when a result was told, asks - earlier tells <= 3
    for t in trials:
        assert 1 <= t["status"]["asksBeforeTell"] - t["status"]["tellSequence"] <= 3

    # kubectl shows the printer columns and finds the trials by label
    table = cluster.kubectl("get", "searchexperiments", "-n", namespace).stdout
    assert "Succeeded" in table and "12/12" in table
    listed = cluster.kubectl("get", "trials", "-n", namespace, "-l", f"{names.LABEL_EXPERIMENT}=toy", "-o", "name")
    assert len(listed.stdout.split()) == 12

    reasons = {e.reason for e in kube.events("toy")}
    assert {"Started", "ControllerCreated", "NewBestTrial", "MaxTrialsReached"} <= reasons

    labels = {"namespace": namespace, "experiment": "toy"}
    assert kubenas_operator.metric("kubenas_trials", phase="Succeeded", **labels) == 12
    assert kubenas_operator.metric("kubenas_experiment_best_reward", **labels) == expected[best]
    assert kubenas_operator.metric("kubenas_trial_duration_seconds_count", **labels) == 12
    assert kubenas_operator.metric("kubenas_reconciles_total", **labels) > 0
    # the controller pod is released once the search is over
    wait_for("the controller to scale to zero", lambda: not kube.pods(f"{names.LABEL_COMPONENT}=controller"), 60)


def test_raising_max_trials_on_a_running_experiment_takes_effect(kube: Kube, kubenas_operator: OperatorProcess) -> None:
    kube.apply_experiment(experiment_manifest("grow", max_trials=4, parallel=1, settings={"sleep_s": 0.5}))
    wait_for("a first trial", lambda: kube.trials("grow"), timeout=90)
    kube.patch_experiment("grow", {"spec": {"budget": {"maxTrials": 6, "parallelTrials": 2}}})
    exp = kube.wait_phase("grow", timeout=180)
    assert exp["status"]["phase"] == "Succeeded"
    assert exp["status"]["trials"]["total"] == 6
    assert exp["status"]["progress"] == "6/6"
    assert "BudgetChanged" in {e.reason for e in kube.events("grow")}
    # once the search is over a larger budget is refused, not shown as 6/8 and never used
    kube.patch_experiment("grow", {"spec": {"budget": {"maxTrials": 8}}})
    wait_for("the refusal", lambda: "SpecChangeRefused" in {e.reason for e in kube.events("grow")}, timeout=60)

    def spec_accepted() -> dict[str, Any]:
        conditions = kube.experiment("grow")["status"]["conditions"]  # type: ignore[index]
        return next(c for c in conditions if c["type"] == "SpecAccepted")

    wait_for("the refusal in status", lambda: spec_accepted()["reason"] == "ExperimentFinished", timeout=60)
    status = kube.experiment("grow")["status"]  # type: ignore[index]
    assert status["phase"] == "Succeeded" and status["progress"] == "6/6"
    assert spec_accepted()["status"] == "False"


def test_deleting_the_experiment_removes_its_controller_trials_and_jobs(
    kube: Kube, kubenas_operator: OperatorProcess, namespace: str
) -> None:
    kube.apply_experiment(experiment_manifest("gone", max_trials=20, parallel=2, settings={"sleep_s": 3}))
    wait_for("trials running", lambda: len(kube.jobs("gone")) >= 2, timeout=90)
    assert kube.apps.read_namespaced_deployment("gone-controller", namespace)
    kube.delete_experiment("gone")

    def all_gone() -> bool:
        deployments = kube.apps.list_namespaced_deployment(namespace).items
        services = kube.core.list_namespaced_service(namespace).items
        secrets = [s for s in kube.core.list_namespaced_secret(namespace).items if s.metadata.name == "gone-controller"]
        return not (
            kube.trials("gone")
            or kube.jobs("gone")
            or deployments
            or services
            or secrets
            or kube.pods(f"{names.LABEL_EXPERIMENT}=gone")
        )

    wait_for("every child of the experiment to be deleted", all_gone, timeout=120)
    assert kubenas_operator.metric("kubenas_reconciles_total", namespace=namespace, experiment="gone") == 0

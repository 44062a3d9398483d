"""A one-shot SearchExperiment on the cluster: admitted, then failed with a condition, never run as an
ordinary search (the operator side of one-shot search is not built; docs/oneshot.md)."""

from __future__ import annotations

from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess, condition, experiment_manifest

__all__ = ["crds", "kube", "kubenas_operator"]


def test_a_one_shot_search_fails_with_one_shot_unsupported_and_starts_no_trial(
    kube: Kube, kubenas_operator: OperatorProcess
) -> None:
    manifest = experiment_manifest("oneshot", max_trials=2, parallel=2)
    manifest["spec"]["oneShot"] = {"evaluations": 4, "topK": 2}
    kube.apply_experiment(manifest)
    exp = kube.wait_phase("oneshot", timeout=120)
    assert exp["status"]["phase"] == "Failed"
    failed = condition(exp, "Failed")
    assert failed["reason"] == "OneShotUnsupported" and "spec.oneShot" in failed["message"]
    assert kube.trials("oneshot") == []

"""The real PyTorch trainer on scikit-learn's digits, run by the operator: the search succeeds."""

from __future__ import annotations

from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess, experiment_manifest

__all__ = ["crds", "kube", "kubenas_operator"]


def test_the_trainer_on_digits_finishes_succeeded(kube: Kube, kubenas_operator: OperatorProcess) -> None:
    manifest = experiment_manifest(
        "digits",
        max_trials=3,
        parallel=2,
        command=["kubenas-trainer"],
        strategy={"name": "evolution", "seed": 1, "evolution": {"populationSize": 2, "sampleSize": 2}},
        search_space={"cell": {"nodes": 3, "operations": ["skip_connect", "nor_conv_1x1", "nor_conv_3x3"]}},
        settings={
            "dataset": "digits",
            "epochs": 2,
            "batchSize": 64,
            "width": 8,
            "stages": 2,
            "cellsPerStage": 1,
            "threads": 1,
            "timeBudgetS": 90,
        },
        template={"deadlineSeconds": 600, "resources": {"requests": {"cpu": "500m"}}},
    )
    kube.apply_experiment(manifest)
    exp = kube.wait_phase("digits", timeout=600)
    status = exp["status"]
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["succeeded"] >= 1
    assert 0.3 < status["bestReward"] <= 1.0  # val_accuracy of a real network on 10 classes
    best = next(t for t in kube.trials("digits") if t["metadata"]["name"] == status["bestTrial"]["name"])
    assert {"val_accuracy", "params"} <= set(best["status"]["metrics"])
    # the real trainer's epochs reached the controller through the push channel while it ran
    for t in kube.trials("digits"):
        if t["status"]["phase"] == "Succeeded":
            steps = [p["step"] for p in t["status"]["curve"]]
            assert steps == list(range(1, len(steps) + 1)) and steps, t["status"]

"""Several objectives and GPU-hour budgets on the development cluster: the Pareto front in the
experiment's status, and budget.maxGpuHours ending an experiment whose trials hold (faked) GPUs."""

from __future__ import annotations

from typing import Any

import pytest

from kubenas.operator import names
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess, condition, experiment_manifest, wait_for

__all__ = ["crds", "kube", "kubenas_operator"]

OBJECTIVES = [{"name": "val_accuracy", "direction": "maximize"}, {"name": "latency_ms", "direction": "minimize"}]
GPU_TEMPLATE = {
    "resources": {"limits": {"nvidia.com/gpu": 1}},
    "nodeSelector": {"nvidia.com/gpu.present": "true"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}


def non_dominated(points: dict[str, tuple[float, float]]) -> set[str]:
    """Names whose (accuracy up, latency down) no other point beats in both and strictly in one."""

    def beats(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] >= b[0] and a[1] <= b[1] and a != b

    return {n for n, p in points.items() if not any(beats(q, p) for q in points.values())}


def test_a_multi_objective_search_shows_its_pareto_front_in_status(
    kube: Kube, kubenas_operator: OperatorProcess
) -> None:
    manifest = experiment_manifest("pareto", max_trials=10, parallel=3, strategy={"name": "nsga2", "seed": 3})
    manifest["spec"]["objective"] = {"metrics": OBJECTIVES}
    kube.apply_experiment(manifest)
    exp = kube.wait_phase("pareto", timeout=240)
    status = exp["status"]
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["succeeded"] == 10
    trials = kube.trials("pareto")
    points = {
        t["metadata"]["name"]: (t["status"]["metrics"]["val_accuracy"], t["status"]["metrics"]["latency_ms"])
        for t in trials
    }
    front = status["paretoFront"]
    assert {f["name"] for f in front} == non_dominated(points)
    assert status["paretoSize"] == len(front)
    for f in front:
        assert f["values"] == dict(zip(("val_accuracy", "latency_ms"), points[f["name"]], strict=True))
    # the best trial is the front's best on the first objective
    assert status["bestTrial"]["name"] == max(front, key=lambda f: f["values"]["val_accuracy"])["name"]
    # the stored spec says what was asked: metric and direction follow the first objective
    assert kube.experiment("pareto")["spec"]["objective"]["metrics"] == OBJECTIVES


def test_a_gpu_hour_budget_ends_the_experiment_and_cancels_its_running_trials(
    kube: Kube, kubenas_operator: OperatorProcess, namespace: str
) -> None:
    manifest = experiment_manifest(
        "gpuhours",
        max_trials=40,
        parallel=2,
        settings={"sleep_s": 2},
        budget={"maxGpuHours": 0.004},  # 14.4 GPU-seconds: a few rounds of two 2-second trials on 1 GPU each
        template=GPU_TEMPLATE,
    )
    kube.apply_experiment(manifest)
    exp = kube.wait_phase("gpuhours", timeout=240)
    status = exp["status"]
    assert status["phase"] == "Succeeded", status
    assert condition(exp, "Succeeded")["reason"] == "GpuHoursExhausted"
    assert "maxGpuHours=0.004" in status["message"]
    assert status["gpuHours"]["limit"] == 0.004
    assert status["gpuHours"]["used"] >= 0.004
    assert status["trials"]["succeeded"] >= 1 and status["trials"]["total"] < 40

    trials = {t["metadata"]["name"]: t for t in kube.trials("gpuhours")}
    cancelled = [n for n, t in trials.items() if t["status"].get("reason") == "Cancelled"]
    assert cancelled, "the trials running when the budget ran out are cancelled"
    assert all(t["status"]["phase"] in ("Succeeded", "Failed") for t in trials.values())
    used = sum(t["status"].get("gpuSeconds", 0.0) for t in trials.values())
    assert abs(used / 3600 - status["gpuHours"]["used"]) < 1e-3  # the status is the sum of the trials'
    # their pods are gone: no GPU is held once the experiment is over
    wait_for(
        "the cancelled trials' pods to go",
        lambda: (
            not [
                p
                for p in kube.pods(
                    f"{names.LABEL_EXPERIMENT}=gpuhours,{names.LABEL_COMPONENT}={names.COMPONENT_TRAINER}"
                )
                if p.status.phase in ("Pending", "Running")
            ]
        ),
        60,
    )
    labels: dict[str, Any] = {"namespace": namespace, "experiment": "gpuhours"}
    assert kubenas_operator.metric("kubenas_experiment_gpu_seconds", **labels) >= 0.004 * 3600
    assert kubenas_operator.metric("kubenas_experiment_gpu_seconds_limit", **labels) == pytest.approx(0.004 * 3600)

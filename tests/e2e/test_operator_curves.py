"""Learning curves and pruning on the development cluster: trainer pods post their epochs to the
experiment's controller pod (the push channel), the operator writes each running Trial's curve and
carries out the stopping rule's Prune by deleting the Job, and with it the pod."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from kubenas.operator import names
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess, experiment_manifest, wait_for

__all__ = ["crds", "kube", "kubenas_operator"]

EPOCHS = 8


def running_pod(kube: Kube, trial: str) -> bool:
    pods = kube.pods(f"{names.LABEL_TRIAL}={trial}")
    return any(p.status.phase == "Running" and p.metadata.deletion_timestamp is None for p in pods)


def test_a_curve_arrives_in_the_trial_status_while_the_trial_runs(
    kube: Kube, kubenas_operator: OperatorProcess
) -> None:
    settings = {"epochs": 6, "epoch_s": 1.5}
    kube.apply_experiment(experiment_manifest("curve", max_trials=1, parallel=1, settings=settings))

    def curve_while_running() -> list[dict[str, Any]] | None:
        trials = kube.trials("curve")
        if not trials:
            return None
        status = trials[0].get("status") or {}
        curve = status.get("curve") or []
        running = status.get("phase") in (None, "Pending", "Running") and running_pod(kube, "curve-00000")
        return curve if len(curve) >= 2 and running else None

    partial = wait_for("two points of the curve while the trial runs", curve_while_running, timeout=120, every=0.2)
    assert [p["step"] for p in partial] == list(range(1, len(partial) + 1)) and len(partial) < 6
    exp = kube.wait_phase("curve", timeout=120)
    assert exp["status"]["phase"] == "Succeeded"
    final = kube.trials("curve")[0]["status"]
    assert [p["step"] for p in final["curve"]] == [1, 2, 3, 4, 5, 6]
    assert final["curve"][:2] == partial[:2]  # the points written while it ran are the ones it ended with
    assert final["curve"][-1]["value"] == pytest.approx(final["metrics"]["val_accuracy"])


def test_a_pruned_trial_keeps_its_partial_result_and_its_pod_is_gone_within_seconds(
    kube: Kube, kubenas_operator: OperatorProcess
) -> None:
    # With this seed trials 1, 2 and 4 fall below the median of the finished ones (the same run in
    # local mode prunes the same trials: one trial at a time, the toy trial is deterministic).
    manifest = experiment_manifest(
        "prune",
        max_trials=5,
        parallel=1,
        strategy={"name": "random", "seed": 2},
        settings={"epochs": EPOCHS, "epoch_s": 1.0},
    )
    manifest["spec"]["earlyStopping"] = {"rule": "median", "startupTrials": 1, "warmupSteps": 2}
    kube.apply_experiment(manifest)

    pruned_at: dict[str, float] = {}
    gone_at: dict[str, float] = {}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        now = time.monotonic()
        for t in kube.trials("prune"):
            name = t["metadata"]["name"]
            if (t.get("status") or {}).get("phase") == "Pruned":
                pruned_at.setdefault(name, now)
        for name in set(pruned_at) - set(gone_at):
            if not kube.pods(f"{names.LABEL_TRIAL}={name}"):
                gone_at[name] = time.monotonic()
        phase = ((kube.experiment("prune") or {}).get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and set(gone_at) == set(pruned_at):
            break
        time.sleep(0.1)

    exp = kube.wait_phase("prune", timeout=5)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    assert exp["status"]["trials"]["pruned"] == 3 and exp["status"]["trials"]["succeeded"] == 2
    trials = {t["metadata"]["name"]: t["status"] for t in kube.trials("prune")}
    assert sorted(pruned_at) == ["prune-00001", "prune-00002", "prune-00004"]
    for name in pruned_at:
        status = trials[name]
        assert status["reason"] == "EarlyStopped" and "median" in status["message"]
        assert [p["step"] for p in status["curve"]] == list(range(1, len(status["curve"]) + 1))
        assert 2 <= len(status["curve"]) < EPOCHS  # judged after the warm-up, stopped long before the end
        assert status["metrics"]["val_accuracy"] == status["curve"][-1]["value"]  # its partial result
        assert status["reward"] == status["curve"][-1]["value"]
    for name in ("prune-00000", "prune-00003"):
        assert trials[name]["phase"] == "Succeeded" and len(trials[name]["curve"]) == EPOCHS
    assert not [j for j in kube.jobs("prune") if j.metadata.labels[names.LABEL_TRIAL] in pruned_at]
    seconds = sorted(round(gone_at[n] - pruned_at[n], 2) for n in pruned_at)
    print("seconds from a Trial seen Pruned to its pod gone:", json.dumps(seconds))
    assert max(seconds) < 10, seconds

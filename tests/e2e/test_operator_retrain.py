"""Retraining the top k on the development cluster: a toy search, then a retrain experiment naming it.

The retrain resolves its source's Trials when the operator first accepts it, trains exactly the best
distinct architectures as its own Trials, and keeps its resolved list through spec comparisons (no
edit refusal). A retrain whose source does not exist fails with a condition naming the source.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kubenas.operator import names
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess, condition, experiment_manifest

__all__ = ["crds", "kube", "kubenas_operator"]


def retrain_manifest(name: str, source: str, top_k: int) -> dict[str, Any]:
    strategy = {"name": "retrain", "retrain": {"source": {"experiment": source}, "topK": top_k}}
    return experiment_manifest(name, max_trials=top_k, parallel=2, strategy=strategy, settings={"epochs": 2})


def test_a_retrain_trains_the_top_two_of_a_finished_search(kube: Kube, kubenas_operator: OperatorProcess) -> None:
    kube.apply_experiment(retrain_manifest("early", "search", 2))
    early = kube.wait_phase("early", timeout=60)
    assert early["status"]["phase"] == "Failed", early["status"]
    failed = condition(early, "Failed")
    assert failed["reason"] == "SourceUnusable"
    assert "experiment search does not exist" in failed["message"]
    assert "spec.strategy.retrain.source.experiment" in failed["message"]
    assert not kube.trials("early")

    kube.apply_experiment(experiment_manifest("search", max_trials=8, parallel=3))
    assert kube.wait_phase("search", timeout=240)["status"]["phase"] == "Succeeded"
    source = [t for t in kube.trials("search") if t["status"]["phase"] == "Succeeded"]
    ranked = sorted(source, key=lambda t: (-t["status"]["metrics"]["val_accuracy"], t["spec"]["index"]))
    top: list[dict[str, Any]] = []
    for t in ranked:
        if t["spec"]["architecture"] not in [u["spec"]["architecture"] for u in top]:
            top.append(t)

    kube.apply_experiment(retrain_manifest("retrain", "search", 2))
    exp = kube.wait_phase("retrain", timeout=180)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    assert condition(exp, "Succeeded")["reason"] == "MaxTrialsReached"
    trials = kube.trials("retrain")
    assert [t["metadata"]["name"] for t in trials] == ["retrain-00000", "retrain-00001"]
    assert [t["spec"]["architecture"] for t in trials] == [t["spec"]["architecture"] for t in top[:2]]
    # the toy trial scores the architecture: the same architectures reach the same accuracy again
    assert [t["status"]["metrics"]["val_accuracy"] for t in trials] == [
        t["status"]["metrics"]["val_accuracy"] for t in top[:2]
    ]
    assert exp["status"]["bestTrial"]["name"] == "retrain-00000"
    # the accepted spec in the controller Secret holds the resolved list, with where each came from
    secret = kube.core.read_namespaced_secret(names.controller_name("retrain"), kube.namespace)
    stored = json.loads(base64.b64decode(secret.data[names.SPEC_KEY]))
    kept = stored["strategy"]["retrain"]["architectures"]
    assert [c["trial"] for c in kept] == [t["metadata"]["name"] for t in top[:2]]
    # the user's object names only the source: comparing it with the accepted spec refuses nothing
    assert "SpecChangeRefused" not in {e.reason for e in kube.events("retrain")}

"""Lineage, warm starts and seedFrom on the development cluster.

A child Trial records its parent in ``spec.parents`` and its pod starts from the parent's weights,
read from the parent's folder of the artifact store (a claim bound to a local PersistentVolume). A
search with ``seedFrom`` resolves a finished experiment's Trials when the operator first accepts it,
proposes their best architectures first and keeps the list in the accepted spec.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from kubenas.operator import names
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess, experiment_manifest
from tests.e2e.test_operator_artifacts import SETTINGS, bound_claim

__all__ = ["crds", "kube", "kubenas_operator"]


def env_of(kube: Kube, job: str) -> dict[str, str]:
    body = kube.batch.read_namespaced_job(job, kube.namespace).to_dict()
    return {e["name"]: e["value"] for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_a_child_trial_starts_from_its_parents_weights(
    kube: Kube, kubenas_operator: OperatorProcess, tmp_path: Path
) -> None:
    store = tmp_path / "pv"
    pv = bound_claim(kube, store, "nas-store")
    try:
        manifest = experiment_manifest(
            "lineage",
            max_trials=3,
            parallel=1,
            strategy={"name": "evolution", "seed": 4, "evolution": {"populationSize": 2, "sampleSize": 2}},
            search_space={"cell": {"nodes": 3, "operations": ["skip_connect", "nor_conv_1x1", "nor_conv_3x3"]}},
            command=["kubenas-trainer"],
            settings=SETTINGS,
            template={"deadlineSeconds": 600, "inheritWeights": True},
        )
        manifest["spec"]["artifacts"] = {"persistentVolumeClaim": "nas-store", "path": "runs"}
        kube.apply_experiment(manifest)
        status = kube.wait_phase("lineage", timeout=900)["status"]
        assert status["phase"] == "Succeeded", status
        trials = {t["spec"]["index"]: t for t in kube.trials("lineage")}
        assert not trials[0]["spec"].get("parents") and not trials[1]["spec"].get("parents")
        (parent,) = trials[2]["spec"]["parents"]  # population 2: the third is bred from one of the first two
        parent_name = trials[parent]["metadata"]["name"]
        assert env_of(kube, "lineage-00002")["KUBENAS_INIT_WEIGHTS"] == f"/kubenas/output/runs/lineage/{parent_name}"
        child = trials[2]["status"]["metrics"]
        assert child["inherited_fraction"] > 0.5, child
        assert "inherited_fraction" not in trials[0]["status"]["metrics"]
        assert (store / "runs" / "lineage" / parent_name / "model.pt").is_file()
    finally:
        kube.core.delete_persistent_volume(pv)


def test_a_search_starts_from_the_best_of_a_finished_one(kube: Kube, kubenas_operator: OperatorProcess) -> None:
    kube.apply_experiment(experiment_manifest("source", max_trials=6, parallel=3))
    assert kube.wait_phase("source", timeout=240)["status"]["phase"] == "Succeeded"
    succeeded = [t for t in kube.trials("source") if t["status"]["phase"] == "Succeeded"]
    ranked = sorted(succeeded, key=lambda t: (-t["status"]["metrics"]["val_accuracy"], t["spec"]["index"]))
    top: list[dict[str, Any]] = []
    for t in ranked:
        if t["spec"]["architecture"] not in [u["spec"]["architecture"] for u in top]:
            top.append(t)

    strategy = {"name": "tpe", "seed": 2, "seedFrom": {"experiment": "source", "topK": 2}}
    kube.apply_experiment(experiment_manifest("seeded", max_trials=4, parallel=2, strategy=strategy))
    exp = kube.wait_phase("seeded", timeout=240)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    trials = sorted(kube.trials("seeded"), key=lambda t: t["spec"]["index"])
    assert [t["spec"]["architecture"] for t in trials[:2]] == [t["spec"]["architecture"] for t in top[:2]]
    secret = kube.core.read_namespaced_secret(names.controller_name("seeded"), kube.namespace)
    stored = json.loads(base64.b64decode(secret.data[names.SPEC_KEY]))
    kept = stored["strategy"]["seedFrom"]["architectures"]
    assert [c["trial"] for c in kept] == [t["metadata"]["name"] for t in top[:2]]
    assert "SpecChangeRefused" not in {e.reason for e in kube.events("seeded")}

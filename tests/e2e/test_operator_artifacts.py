"""The artifact store on the test cluster: a PVC bound to a local PersistentVolume, weights exported and loaded.

The claim is bound by the real kube-controller-manager's PersistentVolume binder to a ``hostPath``
PersistentVolume made here; the node agent maps the trainer pod's claim volume to that directory.
The experiment uses the full pod template (its own labels, a scratch volume) beside the short form.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from kubenas.export import export, from_cluster
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess, experiment_manifest
from kubenas_trainer.outputs import load_model

__all__ = ["crds", "kube", "kubenas_operator"]

SETTINGS = {
    "dataset": "digits",
    "epochs": 1,
    "batchSize": 64,
    "width": 8,
    "stages": 2,
    "cellsPerStage": 1,
    "threads": 1,
    "timeBudgetS": 90,
}


def bound_claim(kube: Kube, store: Path, name: str) -> str:
    """A PersistentVolume over ``store`` and a claim in the test namespace; returns the PV's name once bound."""
    pv = f"{kube.namespace}-store"
    kube.core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(store), "type": "DirectoryOrCreate"},
            },
        }
    )
    kube.core.create_namespaced_persistent_volume_claim(
        kube.namespace,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "resources": {"requests": {"storage": "1Gi"}},
                "volumeName": pv,  # this PV, never another test's that happens to be Available
            },
        },
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        claim = kube.core.read_namespaced_persistent_volume_claim(name, kube.namespace)
        if claim.status.phase == "Bound":
            assert claim.spec.volume_name == pv
            return pv
        time.sleep(0.5)
    raise AssertionError(f"claim {name} never bound: {claim.status}")


def test_the_best_trial_weights_are_exported_from_the_claim_and_load(
    kube: Kube, kubenas_operator: OperatorProcess, tmp_path: Path
) -> None:
    store = tmp_path / "pv"
    pv = bound_claim(kube, store, "nas-store")
    try:
        manifest = experiment_manifest(
            "weights",
            max_trials=2,
            parallel=2,
            command=["kubenas-trainer"],
            search_space={"cell": {"nodes": 3, "operations": ["skip_connect", "nor_conv_1x1", "nor_conv_3x3"]}},
            settings=SETTINGS,
            template={
                "deadlineSeconds": 600,
                "template": {
                    "metadata": {"labels": {"team": "vision"}},
                    "spec": {
                        "containers": [
                            {"name": "trainer", "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}
                        ],
                        "volumes": [{"name": "scratch", "emptyDir": {}}],
                    },
                },
            },
        )
        manifest["spec"]["artifacts"] = {"persistentVolumeClaim": "nas-store", "path": "runs"}
        kube.apply_experiment(manifest)
        status = kube.wait_phase("weights", timeout=600)["status"]
        assert status["phase"] == "Succeeded", status
        best = status["bestTrial"]["name"]

        job = kube.batch.read_namespaced_job(best, kube.namespace).to_dict()
        pod = job["spec"]["template"]
        assert pod["metadata"]["labels"]["team"] == "vision"
        claims = [v["persistent_volume_claim"] for v in pod["spec"]["volumes"] if v.get("persistent_volume_claim")]
        assert [c["claim_name"] for c in claims] == ["nas-store"]

        trial_dir = store / "runs" / "weights" / best
        assert {"model.pt", "architecture.json", "metrics.jsonl"} <= {p.name for p in trial_dir.iterdir()}

        found = from_cluster(kube.custom, kube.core, kube.namespace, "weights")
        assert found.folder == trial_dir and found.trial == best
        to = tmp_path / "exported"
        export(found, to)
        model = load_model(to)
        state = torch.load(to / "model.pt", weights_only=True)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
        assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)  # digits: 8x8 grey images, ten classes
    finally:
        kube.core.delete_persistent_volume(pv)

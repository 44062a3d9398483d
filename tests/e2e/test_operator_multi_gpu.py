"""A trial asking for two GPUs runs the real trainer data-parallel under torchrun in one pod.

The test cluster's GPU node advertises two ``nvidia.com/gpu`` without real devices, so the two
processes find no CUDA and train with gloo on CPU: what is checked is the operator's part (the
torchrun command, the shared-memory volume, the scheduler placing a 2-GPU pod) and that the trainer's
ranks report one result through the termination message.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kubenas.operator import manifests, names
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess, experiment_manifest

__all__ = ["crds", "kube", "kubenas_operator"]

REPO = Path(__file__).resolve().parents[2]
#: the pods are processes of this machine: they import this checkout's trainer
PYTHONPATH = f"{REPO / 'operator'}:{REPO / 'trainer_image'}"


def test_a_two_gpu_trial_runs_under_torchrun_and_reports_once(kube: Kube, kubenas_operator: OperatorProcess) -> None:
    manifest = experiment_manifest(
        "ddp",
        max_trials=1,
        parallel=1,
        command=[sys.executable, "-m", "kubenas_trainer.main"],
        search_space={"cell": {"nodes": 3, "operations": ["skip_connect", "nor_conv_3x3"]}},
        settings={"dataset": "digits", "epochs": 1, "width": 8, "stages": 2, "cellsPerStage": 1, "threads": 1},
        template={
            "env": [{"name": "PYTHONPATH", "value": PYTHONPATH}],
            "resources": {"limits": {"nvidia.com/gpu": 2}},
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "deadlineSeconds": 400,
        },
    )
    kube.apply_experiment(manifest)
    exp = kube.wait_phase("ddp", timeout=420)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    (pod,) = kube.pods(f"{names.LABEL_EXPERIMENT}=ddp,{names.LABEL_COMPONENT}={names.COMPONENT_TRAINER}")
    assert pod.spec.node_name == "node-gpu-0"
    container = pod.spec.containers[0]
    assert container.command[0] == "torchrun" and "--nproc-per-node" in container.command
    assert any(v.name == manifests.SHM_VOLUME and v.empty_dir.medium == "Memory" for v in pod.spec.volumes)
    (trial,) = kube.trials("ddp")
    assert trial["status"]["phase"] == "Succeeded"
    assert "on 2 x cpu" in (trial["status"].get("message") or ""), trial["status"]

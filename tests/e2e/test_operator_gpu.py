"""GPU trials: the template's GPU limit, nodeSelector, tolerations and priority reach the scheduler."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException

from kubenas.operator import names
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess, experiment_manifest

__all__ = ["crds", "kube", "kubenas_operator"]

PRIORITY = "kubenas-e2e-trials"


def ensure_priority_class(k8s: Any) -> None:
    from kubernetes import client

    try:
        client.SchedulingV1Api(k8s.api).create_priority_class(
            {"metadata": {"name": PRIORITY}, "value": 1000, "description": "Kubenas e2e trials"}
        )
    except ApiException as exc:
        if exc.status != 409:
            raise


def test_gpu_trials_land_on_the_gpu_node_and_count_gpu_seconds(
    kube: Kube, kubenas_operator: OperatorProcess, k8s: Any, namespace: str
) -> None:
    ensure_priority_class(k8s)
    manifest = experiment_manifest(
        "gpu",
        max_trials=4,
        parallel=3,
        settings={"sleep_s": 1.5},
        template={
            "resources": {"limits": {"nvidia.com/gpu": 1}},
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": PRIORITY,
            "deadlineSeconds": 300,
        },
    )
    kube.apply_experiment(manifest)
    exp = kube.wait_phase("gpu", timeout=240)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    pods = kube.pods(f"{names.LABEL_EXPERIMENT}=gpu,{names.LABEL_COMPONENT}={names.COMPONENT_TRAINER}")
    assert len(pods) == 4
    for pod in pods:
        assert pod.spec.node_name == "node-gpu-0"
        assert pod.spec.priority_class_name == PRIORITY
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    job = kube.batch.read_namespaced_job("gpu-00000", namespace)
    assert job.spec.active_deadline_seconds == 300
    gpu_seconds = kubenas_operator.metric("kubenas_gpu_seconds_total", namespace=namespace, experiment="gpu")
    assert gpu_seconds >= 4  # four trials of about 1.5 s on one GPU each (the API keeps whole seconds)

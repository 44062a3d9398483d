"""Kueue on the development cluster: upstream's controller, CRDs and webhooks, for real.

A plain suspended Job in a LocalQueue is admitted (Kueue's Workload gets quota, the Job is
unsuspended) and runs; with no quota in its ClusterQueue it stays suspended. The Job is created
through Kueue's webhooks, which the API server reaches on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubenas_dev.cluster.pytest_plugin import KubeApis, wait_until
from kubenas_dev.cluster.testing import python_container
from kubenas_dev.kueue import objects
from kubenas_dev.kueue.controller import KueueController
from kubenas_dev.kueue.fixtures import kueue
from kubenas_dev.kueue.manifests import QUEUE_LABEL

__all__ = ["kueue"]


def create(k8s: KubeApis, body: dict[str, Any]) -> None:
    plural = body["kind"].lower() + "s"  # resourceflavors, clusterqueues, localqueues
    namespace = body["metadata"].get("namespace")
    if namespace:
        k8s.custom.create_namespaced_custom_object(objects.GROUP, objects.VERSION, namespace, plural, body)
    else:
        k8s.custom.create_cluster_custom_object(objects.GROUP, objects.VERSION, plural, body)


def delete_cluster_object(k8s: KubeApis, plural: str, name: str) -> None:
    try:
        k8s.custom.delete_cluster_custom_object(objects.GROUP, objects.VERSION, plural, name)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def queue(k8s: KubeApis, namespace: str, kueue: KueueController, request: pytest.FixtureRequest) -> Iterator[str]:
    """A LocalQueue ``queue`` in the test's namespace, on a ClusterQueue of the quota the test
    parametrizes it with (cpu, memory)."""
    quota = request.param
    create(k8s, objects.resource_flavor(namespace))
    create(k8s, objects.cluster_queue(namespace, namespace, quota))
    create(k8s, objects.local_queue(namespace, "queue", namespace))
    try:
        yield "queue"
    finally:
        delete_cluster_object(k8s, "clusterqueues", namespace)
        delete_cluster_object(k8s, "resourceflavors", namespace)


def queued_job(name: str, queue_name: str) -> dict[str, Any]:
    container = python_container("main", "print('admitted and ran')")
    container["resources"] = {"requests": {"cpu": "100m", "memory": "64Mi"}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {QUEUE_LABEL: queue_name}},
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def workload_of(k8s: KubeApis, namespace: str, job: str) -> dict[str, Any] | None:
    listed = k8s.custom.list_namespaced_custom_object(objects.GROUP, objects.VERSION, namespace, "workloads")
    owned = [w for w in listed["items"] if any(o["name"] == job for o in w["metadata"].get("ownerReferences", []))]
    return owned[0] if owned else None


@pytest.mark.parametrize("queue", [{"cpu": "1", "memory": "1Gi"}], indirect=True)
def test_a_queued_job_is_admitted_and_runs(k8s: KubeApis, namespace: str, queue: str) -> None:
    k8s.batch.create_namespaced_job(namespace, queued_job("hello", queue))

    def complete() -> bool:
        job = k8s.raw(k8s.batch.read_namespaced_job("hello", namespace))
        return objects.condition(job, "Complete") is not None

    wait_until("the queued Job to be admitted and complete", complete, timeout=120)
    workload = workload_of(k8s, namespace, "hello")
    assert workload is not None
    admitted = objects.condition(workload, "Admitted")
    assert admitted is not None and admitted["status"] == "True", workload["status"]
    assert workload["status"]["admission"]["clusterQueue"] == namespace


@pytest.mark.parametrize("queue", [{"cpu": "0", "memory": "0"}], indirect=True)
def test_with_no_quota_a_queued_job_stays_suspended(k8s: KubeApis, namespace: str, queue: str) -> None:
    k8s.batch.create_namespaced_job(namespace, queued_job("waits", queue))

    def pending() -> dict[str, Any] | None:
        workload = workload_of(k8s, namespace, "waits")
        reserved = objects.condition(workload, "QuotaReserved") if workload else None
        return workload if reserved is not None and reserved["status"] == "False" else None

    workload = wait_until("Kueue to find no quota for the Job", pending, timeout=60)
    assert objects.condition(workload, "QuotaReserved")["reason"] == "Pending"
    job = k8s.batch.read_namespaced_job("waits", namespace)
    assert job.spec.suspend is True and not job.status.active
    assert not k8s.core.list_namespaced_pod(namespace).items

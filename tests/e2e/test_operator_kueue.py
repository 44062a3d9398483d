"""Queued trials: an experiment in a Kueue LocalQueue runs within its ClusterQueue's GPU quota and
survives a preemption.

The ClusterQueue lends 2 GPUs; the experiment asks for 4 parallel trials of one GPU each. Kueue
admits two trainer Jobs at a time (the other two wait, suspended, and the experiment shows them as
waiting), a watch on the trainer pods asserts that never more than two exist at once, and a
higher-priority Job in the same queue preempts a running trial in the middle of its run: Kueue
suspends its Job, the Job controller deletes its pod, and the trial runs again once re-admitted,
finishing once, never counted failed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from kubenas.operator import names
from kubenas_dev.cluster.client import api_client
from kubenas_dev.cluster.pytest_plugin import KubeApis, wait_until
from kubenas_dev.cluster.testing import python_container
from kubenas_dev.kueue import objects
from kubenas_dev.kueue.controller import KueueController
from kubenas_dev.kueue.fixtures import kueue
from kubenas_dev.kueue.manifests import QUEUE_LABEL
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess, experiment_manifest

__all__ = ["crds", "kube", "kubenas_operator", "kueue"]

GPU = "nvidia.com/gpu"
TRAINERS = f"{names.LABEL_COMPONENT}={names.COMPONENT_TRAINER}"


class TrainerPods:
    """Watches the namespace's trainer pods: how many exist at once (not yet ended), and which were
    deleted before they ended (stopped from outside: Kueue's preemption)."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.api = api_client(cluster.kubeconfig)
        self.namespace = namespace
        self.live: dict[str, str] = {}  # uid -> trial, pods that have not ended
        self.most = 0
        self.stopped: set[str] = set()  # trials whose pod was deleted while its trainer ran
        self._watch = watch.Watch()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TrainerPods:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping = True
        self._watch.stop()
        self._thread.join(timeout=10)
        self.api.close()

    def _run(self) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        try:
            for event in self._watch.stream(core.list_namespaced_pod, self.namespace, label_selector=TRAINERS):
                self._see(event)
        except Exception:
            if not self._stopping:
                raise

    def _see(self, event: dict[str, Any]) -> None:
        pod = event["object"]
        uid, trial = pod.metadata.uid, pod.metadata.labels.get(names.LABEL_TRIAL, "")
        ended = event["type"] == "DELETED" or pod.status.phase in ("Succeeded", "Failed")
        if pod.metadata.deletion_timestamp is not None and uid in self.live and not ended:
            self.stopped.add(trial)
        if ended:
            self.live.pop(uid, None)
        else:
            self.live[uid] = trial
        self.most = max(self.most, len(self.live))


@pytest.fixture
def gpu_queue(k8s: KubeApis, namespace: str, kueue: KueueController) -> Iterator[str]:
    """A LocalQueue ``gpus`` on a ClusterQueue lending 2 GPUs that preempts for higher priorities, and a
    WorkloadPriorityClass named after the namespace."""
    cq = objects.cluster_queue(
        namespace,
        namespace,
        {"cpu": "64", "memory": "256Gi", GPU: 2},
        preempt_lower_priority=True,
    )
    for body, plural in (
        (objects.resource_flavor(namespace), "resourceflavors"),
        (cq, "clusterqueues"),
        (objects.workload_priority_class(namespace, 1000), "workloadpriorityclasses"),
    ):
        k8s.custom.create_cluster_custom_object(objects.GROUP, objects.VERSION, plural, body)
    k8s.custom.create_namespaced_custom_object(
        objects.GROUP, objects.VERSION, namespace, "localqueues", objects.local_queue(namespace, "gpus", namespace)
    )
    try:
        yield "gpus"
    finally:
        for plural in ("clusterqueues", "resourceflavors", "workloadpriorityclasses"):
            try:
                k8s.custom.delete_cluster_custom_object(objects.GROUP, objects.VERSION, plural, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def urgent_job(queue: str, priority_class: str) -> dict[str, Any]:
    """A one-GPU Job of higher priority in the same queue: Kueue makes room by preempting a trial."""
    container = python_container("urgent", "import time; time.sleep(3)")
    container["resources"] = {"limits": {GPU: "1"}, "requests": {"cpu": "100m", GPU: "1"}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "urgent",
            "labels": {QUEUE_LABEL: queue, objects.PRIORITY_CLASS_LABEL: priority_class},
        },
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def test_queued_trials_stay_within_the_gpu_quota_and_survive_a_preemption(
    cluster: Any,
    k8s: KubeApis,
    kube: Kube,
    kubenas_operator: OperatorProcess,
    namespace: str,
    gpu_queue: str,
) -> None:
    manifest = experiment_manifest(
        "queued",
        max_trials=6,
        parallel=4,
        settings={"sleep_s": 6},
        template={"resources": {"limits": {GPU: 1}}, "deadlineSeconds": 300},
    )
    manifest["spec"]["queueName"] = gpu_queue
    with TrainerPods(cluster, namespace) as pods:
        kube.apply_experiment(manifest)

        def two_running_two_waiting() -> dict[str, Any] | None:
            status = (kube.experiment("queued") or {}).get("status") or {}
            trials = status.get("trials") or {}
            running = [p for p in kube.pods(TRAINERS) if p.status.phase == "Running"]
            return trials if len(running) == 2 and trials.get("waiting") == 2 else None

        trials = wait_until("two trials admitted and two waiting", two_running_two_waiting, timeout=120)
        assert trials["failed"] == 0
        waiting = kubenas_operator.metric("kubenas_trials", namespace=namespace, experiment="queued", phase="Waiting")
        assert waiting == 2

        k8s.batch.create_namespaced_job(namespace, urgent_job(gpu_queue, namespace))
        wait_until("a running trial preempted", lambda: pods.stopped, timeout=60)

        held: list[int] = []  # trials the status shows running or waiting, sampled while the urgent Job runs

        def urgent_done() -> bool:
            trials = ((kube.experiment("queued") or {}).get("status") or {}).get("trials") or {}
            held.append(trials.get("running", 0) + trials.get("waiting", 0))
            job = k8s.raw(k8s.batch.read_namespaced_job("urgent", namespace))
            return objects.condition(job, "Complete") is not None

        wait_until("the urgent Job admitted and complete", urgent_done, timeout=90)
        exp = kube.wait_phase("queued", timeout=240)

    status = exp["status"]
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["succeeded"] == 6 and status["trials"]["failed"] == 0, status["trials"]
    assert status["trials"]["waiting"] == 0
    assert pods.most <= 2, f"{pods.most} trainer pods at once with a quota of 2 GPUs"
    # a preempted trial waits again: it is shown waiting, not also running (never more than the 4 Jobs)
    assert held and max(held) <= 4, held
    trials = kube.trials("queued")
    assert len(trials) == 6 and all(t["status"]["phase"] == "Succeeded" for t in trials)
    preempted = sorted(pods.stopped)
    assert preempted, "no trial was preempted"
    for name in preempted:  # it ran again after re-admission, and its one result counts once
        trial = next(t for t in trials if t["metadata"]["name"] == name)
        assert trial["status"]["phase"] == "Succeeded"
        assert len(kube.pods(f"{names.LABEL_TRIAL}={name}")) == 1  # the preempted pod is gone, the rerun's stays
    assert kubenas_operator.metric("kubenas_trial_turnaround_seconds_count", namespace=namespace, experiment="queued")

"""Kueue on the test cluster: how long it takes to start, and to admit a Job into a queue with free quota.

Starts a test cluster and Kueue (``kubenas_dev.kueue``), makes a ClusterQueue with room for every Job
and a LocalQueue, then creates suspended Jobs in that queue one after the other and times, through a
watch, the moment Kueue unsuspends each (admission) and the moment its pod exists (the Job
controller's part after admission). Sequential, so each figure is one Job's latency, not a queue's
backlog. Run it under the e2e lock: it starts its own cluster.

    python benchmarks/kueue_admission.py [--jobs 20] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from kubenas_dev.cluster.launcher import Cluster, StartOptions
from kubenas_dev.cluster.testing import python_container
from kubenas_dev.kueue import build, objects
from kubenas_dev.kueue.controller import KueueController
from kubenas_dev.kueue.manifests import QUEUE_LABEL

NAMESPACE = "bench"


def queued_job(name: str) -> dict[str, Any]:
    container = python_container("main", "pass")
    container["resources"] = {"requests": {"cpu": "10m"}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {QUEUE_LABEL: "queue"}},
        "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
    }


def time_one(api: client.ApiClient, name: str) -> tuple[float, float]:
    """Seconds from the Job's create call to its admission (unsuspended) and to its first pod."""
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    started = time.monotonic()
    batch.create_namespaced_job(NAMESPACE, queued_job(name))
    admitted = None
    for event in watch.Watch().stream(
        batch.list_namespaced_job, NAMESPACE, field_selector=f"metadata.name={name}", timeout_seconds=60
    ):
        if event["object"].spec.suspend is False:
            admitted = time.monotonic() - started
            break
    pod = None
    for _event in watch.Watch().stream(
        core.list_namespaced_pod, NAMESPACE, label_selector=f"job-name={name}", timeout_seconds=60
    ):
        pod = time.monotonic() - started
        break
    if admitted is None or pod is None:
        raise SystemExit(f"{name}: not admitted or no pod within 60 s")
    return admitted, pod


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    built = build.ensure_built()
    with tempfile.TemporaryDirectory(prefix="kubenas-kueue-bench-") as tmp:
        cluster = Cluster.start(Path(tmp) / "cluster", StartOptions(owner_pid=os.getpid()))
        try:
            t0 = time.monotonic()
            kueue = KueueController.start(cluster, built)
            start_s = time.monotonic() - t0
            api = cluster.api_client()
            client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
            custom = client.CustomObjectsApi(api)
            quota = {"cpu": "100", "memory": "100Gi"}
            for body, plural in (
                (objects.resource_flavor("default"), "resourceflavors"),
                (objects.cluster_queue("bench", "default", quota), "clusterqueues"),
            ):
                custom.create_cluster_custom_object(objects.GROUP, objects.VERSION, plural, body)
            custom.create_namespaced_custom_object(
                objects.GROUP,
                objects.VERSION,
                NAMESPACE,
                "localqueues",
                objects.local_queue(NAMESPACE, "queue", "bench"),
            )
            time.sleep(2)  # the queues reach Kueue's cache
            timings = [time_one(api, f"job-{i}") for i in range(args.jobs)]
            kueue.stop()
        finally:
            cluster.stop()
    figures = {
        "kueue": built.version,
        "jobs": args.jobs,
        "kueue_start_s": round(start_s, 1),
        "admission": summary([a for a, _ in timings]),
        "first_pod": summary([p for _, p in timings]),
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""High availability through kopf peering: two replicas of the chart's operator, one acting.

kopf pauses an operator that sees a live peer of higher priority, and pauses *every* operator that
sees a peer of the same priority. Replicas of one Deployment share their arguments, so they only
form an active/standby pair if the operator gives itself a distinct priority under ``--peering``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubenas.devcluster.launcher import Cluster
from kubenas.devcluster.pytest_plugin import KubeApis, wait_until
from kubenas.operator.testing import Kube, experiment_manifest
from kubenas.packaging.testing import HelmRelease, require


@pytest.fixture
def peered(cluster: Cluster, namespace: str) -> Iterator[HelmRelease]:
    values = {"watchNamespaces": [namespace], "replicas": 2, "peering": {"enabled": True}}
    release = HelmRelease(cluster.kubeconfig, "kubenas", namespace, values, require("helm"))
    release.install()
    try:
        yield release
    finally:
        release.uninstall()


def _peers(k8s: KubeApis, namespace: str) -> dict[str, dict]:
    peering = k8s.custom.get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", "kubenas")
    return dict(peering.get("status") or {})


def test_two_peered_replicas_run_an_experiment(
    cluster: Cluster, namespace: str, k8s: KubeApis, peered: HelmRelease, tmp_path: Path
) -> None:
    peers = wait_until(
        "both replicas in the KopfPeering", lambda: len(_peers(k8s, namespace)) == 2 and _peers(k8s, namespace)
    )
    priorities = [p["priority"] for p in peers.values()]
    kube = Kube(cluster.kubeconfig, namespace)
    try:
        kube.apply_experiment(experiment_manifest("peered", max_trials=2, parallel=2))
        done = kube.wait_phase("peered", timeout=40)
    except TimeoutError as err:
        pytest.fail(f"no replica acted (peer priorities {priorities}): {err}")
    finally:
        kube.close()
    assert done["status"]["phase"] == "Succeeded", json.dumps(done.get("status"), indent=1)
    assert len(set(priorities)) == 2, f"replicas share a priority: {priorities}"

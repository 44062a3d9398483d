"""A second cluster next to the session's: no collision, and nothing left behind by ``down``."""

from __future__ import annotations

import tempfile
from pathlib import Path

from kubernetes import client as k8s_client

from kubenas_dev.cluster.launcher import Cluster, StartOptions
from kubenas_dev.cluster.nodes import NodeSpec
from kubenas_dev.cluster.pytest_plugin import KubeApis, wait_until
from kubenas_dev.cluster.state import processes_with_marker
from kubenas_dev.cluster.testing import pod_manifest, python_container


def test_second_cluster_does_not_collide_and_down_leaves_nothing(cluster: Cluster, k8s: KubeApis) -> None:
    root = Path(tempfile.mkdtemp(prefix="kubenas-second-"))
    second = Cluster.start(root / "cluster", StartOptions(nodes=(NodeSpec("solo-0", cpu="2", memory="4Gi"),)))
    try:
        assert set(second.state.ports.values()).isdisjoint(cluster.state.ports.values())
        assert second.state.server != cluster.state.server
        # Each cluster sees only its own nodes.
        theirs = {n.metadata.name for n in k8s_client.CoreV1Api(second.api_client()).list_node().items}
        ours = {n.metadata.name for n in k8s.core.list_node().items}
        assert theirs == {"solo-0"} and "solo-0" not in ours

        core = k8s_client.CoreV1Api(second.api_client())
        wait_until("default ServiceAccount", lambda: core.read_namespaced_service_account("default", "default"))
        core.create_namespaced_pod(
            "default", pod_manifest("sleeper", [python_container("c", "import time; time.sleep(600)")])
        )
        ip = wait_until(
            "sleeper running",
            lambda: (p := core.read_namespaced_pod("sleeper", "default")).status.phase == "Running" and p.status.pod_ip,
        )
        first_block = {p["ip"].split(".")[1] for p in cluster.faults.pods() if p["ip"] != "127.0.0.1"}
        assert ip.split(".")[1] not in first_block  # separate pod-IP blocks
        assert len(processes_with_marker(second.state.cluster_id)) >= 6  # etcd, 3 components, agent, pod
    finally:
        leftovers = second.stop()
    assert processes_with_marker(second.state.cluster_id) == []
    assert leftovers == []  # `down` stopped everything itself; the marker sweep found nothing
    assert not (root / "cluster").exists()
    root.rmdir()
    # The session's cluster is untouched.
    assert cluster.is_running() and k8s.core.list_node().items

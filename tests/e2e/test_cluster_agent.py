"""The node agent behaves like a kubelet where the operator depends on it."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from kubernetes import client as k8s_client

from kubenas_dev.cluster.agent.agent import PodWrites
from kubenas_dev.cluster.client import api_client
from kubenas_dev.cluster.faults import FaultClient
from kubenas_dev.cluster.launcher import Cluster
from kubenas_dev.cluster.pytest_plugin import KubeApis, wait_until
from kubenas_dev.cluster.testing import (
    container_status,
    pod_manifest,
    python_container,
    read_pod,
    wait_gone,
    wait_pod,
    wait_pod_running_ready,
)

SLEEP = "import time; time.sleep(600)"


def test_env_sources_working_dir_and_volumes(cluster: Cluster, k8s: KubeApis, namespace: str) -> None:
    k8s.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "data": {"token": base64.b64encode(b"s3cret").decode()}}
    )
    k8s.core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}, "data": {"mode": "fast"}})
    code = """
        import json, os
        keys = ["MY_NAME", "MY_NS", "MY_IP", "TOKEN", "MODE", "GREETING", "POD_IP"]
        out = {k: os.environ.get(k) for k in keys}
        out["cwd"] = os.getcwd()
        out["scratch_is_cwd"] = os.path.samefile(os.getcwd(), os.environ["SCRATCH"])
        out["settings"] = open(os.environ["SETTINGS"] + "/mode").read()
        open(os.environ["POD_TERMINATION_MESSAGE_PATH"], "w").write(json.dumps(out))
    """
    container = python_container(
        "main",
        code,
        workingDir="/scratch",
        env=[
            {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "GREETING", "value": "mode=$(MODE)"},
            {"name": "SCRATCH", "value": "/scratch"},
            {"name": "SETTINGS", "value": "/etc/settings"},
        ],
        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}, {"name": "settings", "mountPath": "/etc/settings"}],
    )
    pod = pod_manifest(
        "env",
        [container],
        volumes=[{"name": "scratch", "emptyDir": {}}, {"name": "settings", "configMap": {"name": "settings"}}],
    )
    k8s.core.create_namespaced_pod(namespace, pod)
    done = wait_pod(k8s, namespace, "env", ("Succeeded", "Failed"))

    out = json.loads(container_status(done)["state"]["terminated"]["message"])
    assert out["MY_NAME"] == "env" and out["MY_NS"] == namespace
    assert out["MY_IP"] == out["POD_IP"] == done["status"]["podIP"]
    assert out["TOKEN"] == "s3cret" and out["MODE"] == "fast" and out["GREETING"] == "mode=fast"
    assert out["scratch_is_cwd"] and out["settings"] == "fast"
    assert out["cwd"].startswith(str(cluster.dir))


def test_missing_secret_is_create_container_config_error(k8s: KubeApis, namespace: str) -> None:
    env = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]
    k8s.core.create_namespaced_pod(namespace, pod_manifest("nosecret", [python_container("main", "pass", env=env)]))

    def waiting_reason() -> str | None:
        statuses = read_pod(k8s, namespace, "nosecret")["status"].get("containerStatuses") or []
        return statuses[0]["state"].get("waiting", {}).get("reason") if statuses else None

    assert wait_until("CreateContainerConfigError", lambda: waiting_reason() == "CreateContainerConfigError")
    k8s.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "absent"}, "data": {"k": base64.b64encode(b"v").decode()}}
    )
    wait_pod(k8s, namespace, "nosecret", ("Succeeded",))


def test_on_failure_restarts_then_succeeds(k8s: KubeApis, cluster: Cluster, namespace: str) -> None:
    code = """
        import os, pathlib, sys
        marker = pathlib.Path(os.environ["STATE"]) / "attempts"
        n = int(marker.read_text()) if marker.exists() else 0
        marker.write_text(str(n + 1))
        print("attempt", n + 1, flush=True)
        sys.exit(0 if n >= 2 else 3)
    """
    container = python_container(
        "flaky", code, env=[{"name": "STATE", "value": "/state"}], volumeMounts=[{"name": "s", "mountPath": "/state"}]
    )
    pod = pod_manifest("flaky", [container], restart_policy="OnFailure", volumes=[{"name": "s", "emptyDir": {}}])
    k8s.core.create_namespaced_pod(namespace, pod)
    done = wait_pod(k8s, namespace, "flaky", ("Succeeded", "Failed"), timeout=120)
    status = container_status(done)
    assert done["status"]["phase"] == "Succeeded"
    assert status["restartCount"] == 2
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert "attempt 3" in cluster.logs(namespace, "flaky")


def test_graceful_deletion_sends_sigterm_then_sigkill(k8s: KubeApis, cluster: Cluster, namespace: str) -> None:
    polite = """
        import signal, sys, time
        def bye(*_):
            print("got SIGTERM", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print("ready", flush=True)
        time.sleep(600)
    """
    stubborn = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(600)
    """
    k8s.core.create_namespaced_pod(namespace, pod_manifest("polite", [python_container("main", polite)]))
    k8s.core.create_namespaced_pod(namespace, pod_manifest("stubborn", [python_container("main", stubborn)]))
    for name in ("polite", "stubborn"):
        wait_pod(k8s, namespace, name, ("Running",))
    wait_until("output", lambda: "ready" in cluster.logs(namespace, "polite"))
    wait_until("output", lambda: "ignoring" in cluster.logs(namespace, "stubborn"))

    t0 = time.monotonic()
    k8s.core.delete_namespaced_pod("polite", namespace, grace_period_seconds=30)
    wait_gone(lambda: k8s.core.read_namespaced_pod("polite", namespace), "polite pod")
    assert time.monotonic() - t0 < 15  # it left on SIGTERM, long before the grace period
    assert "got SIGTERM" in cluster.logs(namespace, "polite")

    t0 = time.monotonic()
    k8s.core.delete_namespaced_pod("stubborn", namespace, grace_period_seconds=2)
    wait_gone(lambda: k8s.core.read_namespaced_pod("stubborn", namespace), "stubborn pod")
    assert time.monotonic() - t0 >= 2  # SIGKILL only after the grace period
    wait_until(
        "the agent to forget both pods",
        lambda: not any(p["name"] in ("polite", "stubborn") for p in cluster.faults.pods()),
        timeout=10,
    )


def test_fault_oom_and_evict(k8s: KubeApis, faults: FaultClient, namespace: str) -> None:
    for name in ("oom", "evicted"):
        k8s.core.create_namespaced_pod(namespace, pod_manifest(name, [python_container("main", SLEEP)]))
        wait_pod(k8s, namespace, name, ("Running",))

    faults.oom(namespace, "oom")
    pod = wait_pod(k8s, namespace, "oom", ("Failed",))
    terminated = container_status(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")

    faults.evict(namespace, "evicted")
    pod = wait_pod(k8s, namespace, "evicted", ("Failed",))
    assert pod["status"]["reason"] == "Evicted"
    disruption = [c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget"]
    assert disruption and disruption[0]["status"] == "True"


def test_node_not_ready_fault_taints_node(k8s: KubeApis, faults: FaultClient) -> None:
    node = "node-cpu-0"

    def taints() -> set[str]:
        return {t.key for t in (k8s.core.read_node(node).spec.taints or [])}

    faults.set_node_ready(node, False)
    try:
        ready = {c.type: c.status for c in k8s.core.read_node(node).status.conditions}["Ready"]
        assert ready == "False"
        wait_until("not-ready taint", lambda: "node.kubernetes.io/not-ready" in taints())
    finally:
        faults.set_node_ready(node, True)
    wait_until("not-ready taint removed", lambda: "node.kubernetes.io/not-ready" not in taints())


def test_node_leases_are_renewed(k8s: KubeApis, cluster: Cluster) -> None:
    for node in cluster.state.nodes:
        first = k8s.coordination.read_namespaced_lease(node, "kube-node-lease").spec.renew_time
        wait_until(
            f"lease of {node} renewed",
            lambda n=node, f=first: k8s.coordination.read_namespaced_lease(n, "kube-node-lease").spec.renew_time > f,
            timeout=20,
        )


def test_the_agents_writes_reuse_one_connection(cluster: Cluster, namespace: str) -> None:
    """Status patches, events and deletions go out one after another on a single kept-alive TLS
    connection: an answer left unread would keep its connection out of the pool, and every write
    would pay a new handshake and client-certificate check on both ends."""
    api = api_client(cluster.kubeconfig)
    core = k8s_client.CoreV1Api(api)
    writes = PodWrites(core)
    pod = core.create_namespaced_pod(namespace, pod_manifest("idle", [python_container("main", SLEEP)]))
    body = api.sanitize_for_serialization(pod)
    for i in range(5):
        writes.event(body, "Normal", "Probe", f"write {i}")
        writes.patch_status(namespace, "idle", {"conditions": [{"type": "Extra", "status": str(i % 2 == 0)}]})
    writes.delete_pod(namespace, "idle", body["metadata"]["uid"])
    writes.delete_pod(namespace, "idle", body["metadata"]["uid"])  # already gone: 404, ignored
    pools = api.rest_client.pool_manager.pools  # type: ignore[attr-defined]
    assert [pools[key].num_connections for key in pools.keys()] == [1]  # noqa: SIM118 - the pool container has no iterator
    events = core.list_namespaced_event(namespace, field_selector="reason=Probe").items
    assert sorted(e.message for e in events) == [f"write {i}" for i in range(5)]


def test_a_finished_pod_keeps_no_worker_and_its_deletion_is_still_confirmed(
    k8s: KubeApis, faults: FaultClient, namespace: str
) -> None:
    """Thousands of finished trainer pods must not keep a thread each; the agent itself confirms the
    deletion of a finished pod (grace 0), as the kubelet does."""
    k8s.core.create_namespaced_pod(namespace, pod_manifest("once", [python_container("main", "pass")]))
    wait_pod(k8s, namespace, "once", ("Succeeded",))
    wait_until(
        "the finished pod's worker to end",
        lambda: not any(p["namespace"] == namespace and p["name"] == "once" for p in faults.pods()),
        timeout=30,
    )
    k8s.core.delete_namespaced_pod("once", namespace)  # graceful: only the node's agent may finish it
    wait_gone(lambda: k8s.core.read_namespaced_pod("once", namespace), "pod once deleted", timeout=30)


def test_a_ready_condition_changed_by_someone_else_is_written_back(k8s: KubeApis, namespace: str) -> None:
    """The node lifecycle controller marks the pods of a node it thinks is down not ready; when the
    node is seen again the kubelet writes its own status back. Without that, a pod stayed not ready
    for good and its Service lost the endpoint."""
    k8s.core.create_namespaced_pod(namespace, pod_manifest("steady", [python_container("main", SLEEP)]))
    wait_pod_running_ready(k8s, namespace, "steady")
    patch = {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "NodeNotReady"}]}}
    k8s.core.patch_namespaced_pod_status("steady", namespace, patch)

    def ready_again() -> dict[str, Any] | None:
        pod = read_pod(k8s, namespace, "steady")
        conditions = {c["type"]: c for c in pod["status"]["conditions"]}
        return conditions["Ready"] if conditions["Ready"]["status"] == "True" else None

    ready = wait_until("the agent to write Ready back", ready_again, timeout=30)
    assert "reason" not in ready  # a condition that turned True drops the reason it had while False

"""The development cluster is the real thing: each test exercises one real component."""

from __future__ import annotations

import json
import secrets
import urllib.request

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

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


def test_crd_structural_schema_rejects_invalid_object(k8s: KubeApis, namespace: str) -> None:
    group = f"e2e{secrets.token_hex(3)}.kubenas.io"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                        "color": {"type": "string", "enum": ["red", "blue"]},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    k8s.apiext.create_custom_resource_definition(crd)
    try:
        wait_until(
            "CRD Established",
            lambda: any(
                c.type == "Established" and c.status == "True"
                for c in (k8s.apiext.read_custom_resource_definition(f"widgets.{group}").status.conditions or [])
            ),
        )

        def create(spec: dict[str, object]) -> dict[str, object]:
            body = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}
            return wait_until(  # the new resource may take a moment to be served
                "widget accepted or refused",
                lambda: _create_or_error(k8s, group, namespace, body),
                timeout=30,
            )

        refused = create({"size": 100, "color": "green"})
        assert refused["status"] == 422, refused
        assert "spec.size" in refused["message"] and "spec.color" in refused["message"]
        accepted = create({"size": 3, "color": "red"})
        assert accepted["status"] == 201, accepted
    finally:
        k8s.apiext.delete_custom_resource_definition(f"widgets.{group}")


def _create_or_error(k8s: KubeApis, group: str, namespace: str, body: dict[str, object]) -> dict[str, object] | None:
    try:
        k8s.custom.create_namespaced_custom_object(group, "v1", namespace, "widgets", body)
    except ApiException as err:
        if err.status == 404:  # not served yet
            return None
        return {"status": err.status, "message": err.body if isinstance(err.body, str) else str(err.body)}
    return {"status": 201, "message": ""}


def test_job_succeeds_with_termination_message(k8s: KubeApis, namespace: str) -> None:
    code = """
        import json, os, sys
        print("training", flush=True)
        with open(os.environ["RESULT_FILE"], "w") as fh:
            json.dump({"val_accuracy": 0.93, "python": sys.version_info[0]}, fh)
    """
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        python_container(
                            "trainer", code, env=[{"name": "RESULT_FILE", "value": "/dev/termination-log"}]
                        )
                    ],
                }
            },
        },
    }
    k8s.batch.create_namespaced_job(namespace, job)
    wait_until(
        "Job Complete",
        lambda: any(
            c.type == "Complete" and c.status == "True"
            for c in (k8s.batch.read_namespaced_job("train", namespace).status.conditions or [])
        ),
        timeout=120,
    )
    pods = k8s.core.list_namespaced_pod(namespace, label_selector="job-name=train").items
    assert len(pods) == 1
    pod = k8s.raw(pods[0])
    assert pod["status"]["phase"] == "Succeeded"
    terminated = container_status(pod)["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert json.loads(terminated["message"]) == {"val_accuracy": 0.93, "python": 3}


def test_deleting_owner_garbage_collects_children(k8s: KubeApis, namespace: str) -> None:
    owner = k8s.core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}, "data": {}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    k8s.core.create_namespaced_config_map(namespace, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    pod = pod_manifest("child-pod", [python_container("c", SLEEP)])
    pod["metadata"]["ownerReferences"] = [ref]
    k8s.core.create_namespaced_pod(namespace, pod)
    wait_pod(k8s, namespace, "child-pod", ("Running",))

    k8s.core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
    wait_gone(lambda: k8s.core.read_namespaced_config_map("child", namespace), "child ConfigMap")
    # The pod goes through graceful deletion: the agent stops the process and confirms.
    wait_gone(lambda: k8s.core.read_namespaced_pod("child-pod", namespace), "child Pod")


def test_scheduler_fits_gpus(k8s: KubeApis, namespace: str) -> None:
    def gpu_pod(name: str, gpus: int) -> dict[str, object]:
        limits = {"nvidia.com/gpu": str(gpus)}
        return pod_manifest(name, [python_container("c", SLEEP, resources={"limits": limits})])

    k8s.core.create_namespaced_pod(namespace, gpu_pod("too-many", 3))
    k8s.core.create_namespaced_pod(namespace, gpu_pod("fits", 2))

    fits = wait_pod(k8s, namespace, "fits", ("Running",))
    assert fits["spec"]["nodeName"] == "node-gpu-0"

    def unschedulable() -> dict[str, object] | None:
        pod = read_pod(k8s, namespace, "too-many")
        for c in pod["status"].get("conditions", []):
            if c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable":
                return c
        return None

    condition = wait_until("too-many Unschedulable", unschedulable)
    assert "nvidia.com/gpu" in str(condition.get("message", ""))
    pod = read_pod(k8s, namespace, "too-many")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")


def test_deployment_pod_ip_in_endpointslice(k8s: KubeApis, namespace: str) -> None:
    server = python_container(
        "web",
        """
        import http.server, os
        class Hello(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = ("hello from " + os.environ["MY_POD_NAME"]).encode()
                self.send_response(200); self.end_headers(); self.wfile.write(body)
        http.server.HTTPServer((os.environ["MY_POD_IP"], 8080), Hello).serve_forever()
        """,
        env=[
            {"name": "MY_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "MY_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        ports=[{"containerPort": 8080, "name": "http"}],
        readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [server]}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    k8s.apps.create_namespaced_deployment(namespace, deployment)
    k8s.core.create_namespaced_service(namespace, service)

    def ready_endpoint() -> tuple[str, int] | None:
        slices = k8s.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=web"
        ).items
        for s in slices:
            for ep in s.endpoints or []:
                if ep.conditions and ep.conditions.ready:
                    return ep.addresses[0], s.ports[0].port
        return None

    ip, port = wait_until("a ready endpoint in the Service's EndpointSlice", ready_endpoint, timeout=120)
    pods = k8s.core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert [p.status.pod_ip for p in pods] == [ip]
    assert ip.startswith("127.") and ip != "127.0.0.1" and port == 8080
    # Reach the pod by its EndpointSlice address, never the ClusterIP.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{ip}:{port}/", timeout=5) as resp:
        assert resp.read().decode() == f"hello from {pods[0].metadata.name}"


def test_service_account_without_permissions_is_forbidden(cluster: Cluster, k8s: KubeApis, namespace: str) -> None:
    k8s.core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = k8s.core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token

    cfg = k8s_client.Configuration()
    cfg.host = cluster.state.server
    cfg.ssl_ca_cert = str(cluster.dir / "pki" / "ca.crt")
    cfg.api_key = {"authorization": f"Bearer {token}"}
    cfg.proxy = None
    with k8s_client.ApiClient(cfg) as api:
        core = k8s_client.CoreV1Api(api)
        with pytest.raises(ApiException) as denied:
            core.list_namespaced_pod(namespace)
        assert denied.value.status == 403  # authenticated (not 401), but RBAC says no
        assert f"system:serviceaccount:{namespace}:nobody" in str(denied.value.body)

        role = {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        }
        binding = {
            "metadata": {"name": "nobody-reads-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": namespace}],
        }
        k8s.rbac.create_namespaced_role(namespace, role)
        k8s.rbac.create_namespaced_role_binding(namespace, binding)
        wait_until("the RoleBinding to take effect", lambda: core.list_namespaced_pod(namespace) is not None)
        with pytest.raises(ApiException) as still_denied:
            core.list_namespaced_secret(namespace)
        assert still_denied.value.status == 403


def test_fault_kill_ends_pod_failed_with_exit_code(k8s: KubeApis, faults: FaultClient, namespace: str) -> None:
    k8s.core.create_namespaced_pod(namespace, pod_manifest("victim", [python_container("main", SLEEP)]))
    wait_pod(k8s, namespace, "victim", ("Running",))

    result = faults.kill(namespace, "victim", exit_code=42)
    assert result["killed"] == ["main"]

    pod = wait_pod(k8s, namespace, "victim", ("Failed", "Succeeded"))
    assert pod["status"]["phase"] == "Failed"
    terminated = container_status(pod)["state"]["terminated"]
    assert terminated["exitCode"] == 42 and terminated["reason"] == "Error"


def test_pod_is_running_ready_with_loopback_ip(k8s: KubeApis, namespace: str) -> None:
    k8s.core.create_namespaced_pod(namespace, pod_manifest("plain", [python_container("main", SLEEP)]))
    pod = wait_pod_running_ready(k8s, namespace, "plain")
    assert pod["status"]["podIP"].startswith("127.") and pod["status"]["hostIP"] == "127.0.0.1"
    assert container_status(pod)["state"]["running"]["startedAt"]

"""Small builders and waits for tests against the development cluster.

Pods here run on the host, so a test's container is usually ``python -c <code>``; ``python``
resolves to the interpreter that runs the node agent (the project's), whatever the image says.
"""

from __future__ import annotations

import textwrap
from typing import Any

from kubernetes.client.exceptions import ApiException

from kubenas_dev.cluster.pytest_plugin import KubeApis, wait_until

TERMINAL = ("Succeeded", "Failed")


def python_container(name: str, code: str, **extra: Any) -> dict[str, Any]:
    """A container that runs ``code`` (dedented) with the project's python."""
    return {
        "name": name,
        "image": "python:3.11-slim",  # documentation only: the agent ignores images
        "command": ["python", "-c", textwrap.dedent(code)],
        **extra,
    }


def pod_manifest(
    name: str,
    containers: list[dict[str, Any]],
    restart_policy: str = "Never",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"restartPolicy": restart_policy, "terminationGracePeriodSeconds": 5, "containers": containers, **spec},
    }


def read_pod(k8s: KubeApis, namespace: str, name: str) -> dict[str, Any]:
    return k8s.raw(k8s.core.read_namespaced_pod(name, namespace))


def wait_pod(k8s: KubeApis, namespace: str, name: str, phases: tuple[str, ...], timeout: float = 90) -> dict[str, Any]:
    """Wait until the pod is in one of ``phases``; return it as a dict."""

    def probe() -> dict[str, Any] | None:
        pod = read_pod(k8s, namespace, name)
        return pod if pod.get("status", {}).get("phase") in phases else None

    result: dict[str, Any] = wait_until(f"pod {namespace}/{name} in {phases}", probe, timeout)
    return result


def wait_pod_running_ready(k8s: KubeApis, namespace: str, name: str, timeout: float = 90) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        pod = read_pod(k8s, namespace, name)
        conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        return pod if pod["status"].get("phase") == "Running" and conds.get("Ready") == "True" else None

    result: dict[str, Any] = wait_until(f"pod {namespace}/{name} Running and Ready", probe, timeout)
    return result


def wait_gone(read: Any, what: str, timeout: float = 90) -> None:
    """Wait until ``read()`` raises 404."""

    def probe() -> bool:
        try:
            read()
        except ApiException as err:
            if err.status == 404:
                return True
            raise
        return False

    wait_until(f"{what} to be deleted", probe, timeout)


def container_status(pod: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    statuses = pod["status"].get("containerStatuses", [])
    for status in statuses:
        if name is None or status["name"] == name:
            result: dict[str, Any] = status
            return result
    raise KeyError(name)

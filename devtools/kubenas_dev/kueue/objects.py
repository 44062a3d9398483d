"""Kueue objects for tests, as small pure builders (kueue.x-k8s.io/v1beta2, the release's storage version)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GROUP = "kueue.x-k8s.io"
VERSION = "v1beta2"
API_VERSION = f"{GROUP}/{VERSION}"
PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"


def resource_flavor(name: str) -> dict[str, Any]:
    """A flavor without node labels: every node offers it (the cluster has one kind of GPU)."""
    return {"apiVersion": API_VERSION, "kind": "ResourceFlavor", "metadata": {"name": name}}


def cluster_queue(
    name: str,
    flavor: str,
    quota: Mapping[str, str | int],
    *,
    namespaces: Mapping[str, str] | None = None,
    preempt_lower_priority: bool = False,
) -> dict[str, Any]:
    """A ClusterQueue lending ``quota`` of ``flavor`` to the namespaces whose labels match ``namespaces``
    (all, when ``None``); with ``preempt_lower_priority`` a pending workload evicts admitted ones of
    lower priority in the same queue."""
    spec: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": dict(namespaces)} if namespaces else {},
        "resourceGroups": [
            {
                "coveredResources": list(quota),
                "flavors": [
                    {
                        "name": flavor,
                        "resources": [{"name": r, "nominalQuota": str(q)} for r, q in quota.items()],
                    }
                ],
            }
        ],
    }
    if preempt_lower_priority:
        spec["preemption"] = {"withinClusterQueue": "LowerPriority"}
    return {"apiVersion": API_VERSION, "kind": "ClusterQueue", "metadata": {"name": name}, "spec": spec}


def local_queue(namespace: str, name: str, cluster_queue_name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "LocalQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterQueue": cluster_queue_name},
    }


def workload_priority_class(name: str, value: int) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkloadPriorityClass",
        "metadata": {"name": name},
        "value": value,
        "description": "kubenas e2e",
    }


def condition(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition ``kind`` of a Kueue object (or a Job), if it has one."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            found: dict[str, Any] = cond
            return found
    return None

"""Node registration, Lease renewal and the Ready condition, for every node the agent plays.

The node lifecycle controller (real, in kube-controller-manager) watches the Leases in
``kube-node-lease``: if renewals stop, it marks the node Unknown and taints it. A NotReady fault
keeps the lease alive and reports ``Ready=False``, which is what a kubelet with a broken runtime
does; the controller then taints the node ``not-ready`` and the scheduler avoids it.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubenas_dev.cluster.agent.config import AgentConfig
from kubenas_dev.cluster.errors import NodeNotFoundError
from kubenas_dev.cluster.log import get_logger
from kubenas_dev.cluster.nodes import NodeSpec

log = get_logger("kubenas_dev.cluster.agent.heartbeat")

LEASE_NS = "kube-node-lease"


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeHeartbeat(threading.Thread):
    def __init__(self, api: k8s.ApiClient, config: AgentConfig, stop: threading.Event) -> None:
        super().__init__(name="node-heartbeat", daemon=True)
        self.core = k8s.CoreV1Api(api)
        self.coord = k8s.CoordinationV1Api(api)
        self.config = config
        self.stop = stop
        self.specs = {n.name: n for n in config.nodes}
        self.ready = dict.fromkeys(self.specs, True)
        self.ready_since = dict.fromkeys(self.specs, _now())
        self._uids: dict[str, str] = {}
        self._wake = threading.Event()
        self._lock = threading.Lock()

    # ---- registration

    def register_all(self) -> None:
        for spec in self.specs.values():
            self._register(spec)
            self._push_status(spec.name)
            self._renew_lease(spec.name)

    def _register(self, spec: NodeSpec) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": spec.name, "labels": spec.all_labels()},
            "spec": {"taints": spec.taints} if spec.taints else {},
        }
        try:
            node = self.core.create_node(body)
        except ApiException as err:
            if err.status != 409:
                raise
            node = self.core.patch_node(spec.name, {"metadata": {"labels": spec.all_labels()}})
        self._uids[spec.name] = node.metadata.uid
        log.info("node registered", node=spec.name, capacity=spec.capacity())

    def node_status(self, name: str) -> dict[str, Any]:
        spec = self.specs[name]
        now = _now()
        ready = self.ready[name]
        since = self.ready_since[name]

        def cond(kind: str, status: str, reason: str, message: str, transition: str) -> dict[str, Any]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": transition,
            }

        return {
            "capacity": spec.capacity(),
            "allocatable": spec.capacity(),
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory", since),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", since),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", since),
                cond(
                    "Ready",
                    "True" if ready else "False",
                    "KubeletReady" if ready else "KubeletNotReady",
                    "kubelet is posting ready status" if ready else "node marked NotReady by fault injection",
                    since,
                ),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": self.config.cluster_id,
                "systemUUID": f"{self.config.cluster_id}-{name}",
                "bootID": self.config.cluster_id,
                "kernelVersion": "",
                "osImage": "kubenas node agent",
                "containerRuntimeVersion": "kubenas://local-processes",
                "kubeletVersion": self.config.kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def _push_status(self, name: str) -> None:
        self.core.patch_node_status(name, {"status": self.node_status(name)})

    def _renew_lease(self, name: str) -> None:
        spec = {
            "holderIdentity": name,
            "leaseDurationSeconds": self.config.lease_seconds,
            "renewTime": _micro_now(),
        }
        try:
            self.coord.patch_namespaced_lease(name, LEASE_NS, {"spec": spec})
        except ApiException as err:
            if err.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": self._uids.get(name, "")}
            body = {"metadata": {"name": name, "namespace": LEASE_NS, "ownerReferences": [owner]}, "spec": spec}
            self.coord.create_namespaced_lease(LEASE_NS, body)

    # ---- faults

    def set_ready(self, name: str, ready: bool) -> None:
        if name not in self.specs:
            raise NodeNotFoundError(name)
        with self._lock:
            if self.ready[name] != ready:
                self.ready[name] = ready
                self.ready_since[name] = _now()
        self._push_status(name)
        log.info("node readiness set", node=name, ready=ready)

    # ---- loop

    def run(self) -> None:
        next_lease = next_status = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_lease:
                    for name in self.specs:
                        self._renew_lease(name)
                    next_lease = now + self.config.lease_renew
                if now >= next_status:
                    for name in self.specs:
                        self._push_status(name)
                    next_status = now + self.config.status_refresh
            except Exception as exc:  # the API server may be restarting; keep trying
                log.warning("heartbeat failed", error=exc)
                next_lease = now + 1.0
            self.stop.wait(0.5)

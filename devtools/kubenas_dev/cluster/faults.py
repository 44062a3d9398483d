"""Fault injection, as tests call it: kill a pod's process, evict a pod, make a node NotReady.

The node agent is a separate process (so a crashing test cannot take it down), hence the faults go
over a tiny HTTP API on 127.0.0.1 guarded by a per-cluster token. This module is the client and
the wire format; the agent's server side is ``kubenas_dev.cluster.agent.faultserver``.

Each fault acts like the kubelet would have: a killed container is *reported* with the injected
exit code (and reason, e.g. ``OOMKilled`` for 137) and then follows the pod's restartPolicy; an
evicted pod ends ``Failed``/``Evicted`` with a ``DisruptionTarget`` condition; a NotReady node
keeps its processes and its lease but reports ``Ready=False``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from kubenas_dev.cluster.client import assert_loopback
from kubenas_dev.cluster.errors import DevClusterError, NodeNotFoundError, PodNotFoundError

TOKEN_HEADER = "X-Kubenas-Fault-Token"


class FaultClient:
    """Talks to one cluster's node agent."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        assert_loopback(url)
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={TOKEN_HEADER: self.token, "Content-Type": "application/json"},
        )
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = json.loads(err.read() or b"{}")
            if err.code == 404 and "pod" in detail:
                raise PodNotFoundError(detail.get("namespace", ""), detail["pod"]) from err
            if err.code == 404 and "node" in detail:
                raise NodeNotFoundError(detail["node"]) from err
            raise DevClusterError(f"fault API {path}: HTTP {err.code} {detail}") from err

    def kill(
        self,
        namespace: str,
        pod: str,
        exit_code: int = 137,
        *,
        container: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """SIGKILL the container's processes and report them as exited with ``exit_code``."""
        body = {"namespace": namespace, "pod": pod, "exit_code": exit_code, "container": container, "reason": reason}
        result: dict[str, Any] = self._call("POST", "/faults/kill", body)
        return result

    def oom(self, namespace: str, pod: str, *, container: str | None = None) -> dict[str, Any]:
        """What the kernel's OOM killer looks like to Kubernetes: exit 137, reason OOMKilled."""
        return self.kill(namespace, pod, 137, container=container, reason="OOMKilled")

    def evict(self, namespace: str, pod: str, message: str | None = None) -> dict[str, Any]:
        """Node-pressure eviction: kill at once, pod Failed with reason Evicted."""
        result: dict[str, Any] = self._call(
            "POST", "/faults/evict", {"namespace": namespace, "pod": pod, "message": message}
        )
        return result

    def set_node_ready(self, node: str, ready: bool) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/faults/node-ready", {"node": node, "ready": ready})
        return result

    def pods(self) -> list[dict[str, Any]]:
        """The pods the agent runs: namespace, name, node, IP, phase, container PIDs."""
        result: list[dict[str, Any]] = self._call("GET", "/pods")
        return result

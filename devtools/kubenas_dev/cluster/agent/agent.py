"""The node agent process: watch pods bound to our nodes, run a worker per pod, serve faults."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from kubenas_dev.cluster.agent.config import AgentConfig
from kubenas_dev.cluster.agent.faultserver import serve
from kubenas_dev.cluster.agent.heartbeat import NodeHeartbeat
from kubenas_dev.cluster.agent.ipam import IPAllocator
from kubenas_dev.cluster.agent.pod import Fault, PodContext, PodWorker
from kubenas_dev.cluster.agent.spec import Lookups
from kubenas_dev.cluster.client import api_client
from kubenas_dev.cluster.errors import PodNotFoundError
from kubenas_dev.cluster.log import get_logger

log = get_logger("kubenas_dev.cluster.agent")

SMP = "application/strategic-merge-patch+json"
FAULT_TIMEOUT = 30.0


class NodeAgent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.api = api_client(config.kubeconfig)
        self.core = k8s.CoreV1Api(self.api)
        self.writes = PodWrites(self.core)
        self.stop_event = threading.Event()
        self.heartbeat = NodeHeartbeat(self.api, config, self.stop_event)
        self.ips = IPAllocator(Path(config.ip_lock_dir))
        self.workers: dict[str, PodWorker] = {}
        self.done_uids: set[str] = set()
        self._lock = threading.Lock()
        self.node_names = {n.name for n in config.nodes}
        config.pods_dir.mkdir(parents=True, exist_ok=True)
        self.ctx = PodContext(
            pods_dir=config.pods_dir,
            lookups=Lookups(
                secret=self._secret,
                config_map=self._config_map,
                token=self._token,
                volume_of_claim=self._volume_of_claim,
            ),
            patch_status=self.writes.patch_status,
            delete_pod=self.writes.delete_pod,
            emit_event=self.writes.event,
            allocate_ip=self.ips.allocate,
            release_ip=self.ips.release,
            node_capacity=lambda node: self.heartbeat.specs[node].capacity(),
            server=config.server,
            ca_file=config.ca_file,
            cluster_id=config.cluster_id,
            backoff_initial=config.backoff_initial,
            backoff_max=config.backoff_max,
        )

    # ---- API helpers handed to workers

    def _raw(self, obj: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.api.sanitize_for_serialization(obj)
        return result

    def _secret(self, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return self._raw(self.core.read_namespaced_secret(name, ns))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def _config_map(self, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return self._raw(self.core.read_namespaced_config_map(name, ns))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def _volume_of_claim(self, ns: str, name: str) -> dict[str, Any] | None:
        """The PersistentVolume a claim is bound to (by the controller-manager's binder), or None."""
        try:
            claim = self.core.read_namespaced_persistent_volume_claim(name, ns)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        if claim.status is None or claim.status.phase != "Bound" or not claim.spec.volume_name:
            return None
        return self._raw(self.core.read_persistent_volume(claim.spec.volume_name))

    def _token(self, pod: dict[str, Any], projection: dict[str, Any]) -> str:
        meta = pod["metadata"]
        spec: dict[str, Any] = {
            "expirationSeconds": int(projection.get("expirationSeconds", 3607)),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
        }
        if projection.get("audience"):
            spec["audiences"] = [projection["audience"]]
        sa = pod["spec"].get("serviceAccountName") or "default"
        result = self.core.create_namespaced_service_account_token(sa, meta["namespace"], {"spec": spec})
        return str(result.status.token)

    # ---- pods

    def on_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        spec, meta = pod.get("spec", {}), pod["metadata"]
        if spec.get("nodeName") not in self.node_names:
            return
        uid = meta["uid"]
        with self._lock:
            worker = self.workers.get(uid)
            if event_type == "DELETED":
                if worker:
                    worker.vanished.set()
                return
            if worker and worker.update(pod):
                return
            phase = pod.get("status", {}).get("phase")
            if phase in ("Succeeded", "Failed") or worker:
                # A finished pod has no worker: the agent confirms its deletion, as the kubelet does.
                if meta.get("deletionTimestamp"):
                    self.writes.delete_pod(meta["namespace"], meta["name"], uid)
                return
            if uid in self.done_uids:
                return
            worker = PodWorker(pod, self.ctx)
            self.workers[uid] = worker
        log.info("pod bound", pod=f"{meta['namespace']}/{meta['name']}", node=spec["nodeName"])
        worker.start()

    def reap_workers(self) -> None:
        with self._lock:
            for uid, worker in list(self.workers.items()):
                if worker.finished:
                    del self.workers[uid]
                    self.done_uids.add(uid)

    def find(self, namespace: str, name: str) -> PodWorker:
        with self._lock:
            for worker in self.workers.values():
                live = not (worker.finished or worker.exiting)
                if live and worker.namespace == namespace and worker.pod_name == name:
                    return worker
        raise PodNotFoundError(namespace, name)

    def _fault(self, namespace: str, name: str, fault: Fault) -> dict[str, Any]:
        worker = self.find(namespace, name)
        worker.faults.put(fault)
        worker.update(worker.pod)  # wake it
        if not fault.done.wait(FAULT_TIMEOUT):
            return {"error": "fault not applied in time"}
        return fault.result

    def kill(
        self, namespace: str, name: str, exit_code: int, *, container: str | None = None, reason: str | None = None
    ) -> dict[str, Any]:
        return self._fault(namespace, name, Fault("kill", container=container, exit_code=exit_code, reason=reason))

    def evict(self, namespace: str, name: str, message: str | None = None) -> dict[str, Any]:
        return self._fault(namespace, name, Fault("evict", message=message))

    def pod_summaries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [w.summary() for w in self.workers.values() if not w.finished]

    # ---- watch

    def watch_pods(self) -> None:
        """List the pods bound to a node, then watch from there; list again only when the watch is too old.

        Objects stay plain dicts (``deserialize=False``): the client's models would be built for every
        event only to be thrown away, and that was a third of the agent's CPU under load.
        """
        selector = "spec.nodeName!="
        rv: str | None = None
        while not self.stop_event.is_set():
            try:
                if rv is None:
                    response = self.core.list_pod_for_all_namespaces(field_selector=selector, _preload_content=False)
                    listing = json.loads(response.data)
                    for pod in listing.get("items") or []:
                        self.on_pod("ADDED", pod)
                    rv = listing["metadata"]["resourceVersion"]
                w = watch.Watch()
                for event in w.stream(
                    self.core.list_pod_for_all_namespaces,
                    field_selector=selector,
                    resource_version=rv,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                    deserialize=False,
                ):
                    if self.stop_event.is_set():
                        w.stop()
                        break
                    obj = event["object"]
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self.on_pod(event["type"], obj)  # finished workers are reaped once a second by run()
            except ApiException as err:
                rv = None
                if err.status != 410:  # 410 Gone: relist
                    log.warning("pod watch failed", status=err.status, error=err.reason)
                    self.stop_event.wait(1.0)
            except KeyError:  # an ERROR event (410 Gone: too old a version) that the client cannot read raw
                rv = None
                log.info("pod watch expired; listing again")
            except Exception as exc:
                rv = None
                log.warning("pod watch interrupted", error=exc)
                self.stop_event.wait(1.0)

    # ---- process

    def run(self) -> None:
        self.heartbeat.register_all()
        self.heartbeat.start()
        server = serve(self, self.config.fault_port, self.config.fault_token)
        threading.Thread(target=self.watch_pods, name="pod-watch", daemon=True).start()
        log.info("agent running", nodes=sorted(self.node_names), ip_block=f"127.{self.ips.block}.0.0/16")
        while not self.stop_event.wait(1.0):
            self.reap_workers()
        server.shutdown()
        self.shutdown_pods()

    def shutdown_pods(self) -> None:
        """The cluster is going away: stop every pod's processes quickly, report nothing."""
        with self._lock:
            workers = list(self.workers.values())
        containers = [c for w in workers for c in w.inits + w.containers]
        for worker in workers:
            worker.stop_event.set()
        for c in containers:  # all at once: a sequential 2 s per pod would outlast `down`'s patience
            c.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(c.running for c in containers):
            time.sleep(0.05)
        for c in containers:
            if c.running:
                c.signal_group(signal.SIGKILL)
        log.info("agent stopped", pods=len(workers))

    def request_stop(self, *_: Any) -> None:
        self.stop_event.set()


def main(config_path: str) -> int:
    config = AgentConfig.load(Path(config_path))
    agent = NodeAgent(config)
    signal.signal(signal.SIGTERM, agent.request_stop)
    signal.signal(signal.SIGINT, agent.request_stop)
    (Path(config.state_dir) / "agent.json").write_text(json.dumps({"ip_block": agent.ips.block}))
    agent.run()
    return 0


class PodWrites:
    """What the agent writes for its pods: status patches, confirmed deletions, events. Answers are
    read but not parsed: the client's models cost more CPU than the writes."""

    def __init__(self, core: k8s.CoreV1Api) -> None:
        self.core = core

    def patch_status(self, ns: str, name: str, status: dict[str, Any]) -> str:
        """Returns the pod's resourceVersion after the write."""
        return _version_of(
            self.core.patch_namespaced_pod_status(
                name, ns, {"status": status}, _content_type=SMP, _preload_content=False
            )
        )

    def delete_pod(self, ns: str, name: str, uid: str) -> None:
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            _discard(
                self.core.delete_namespaced_pod(name, ns, body=body, grace_period_seconds=0, _preload_content=False)
            )
        except ApiException as err:
            if err.status not in (404, 409):
                raise

    def event(self, pod: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message,
            "source": {"component": "kubelet", "host": pod["spec"].get("nodeName", "")},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            _discard(self.core.create_namespaced_event(meta["namespace"], body, _preload_content=False))
        except Exception as err:  # events are best effort, as in the kubelet: an API server that is down
            # must not end the pod's worker (its pod would stay Pending for ever)
            log.debug("event not recorded", reason=reason, error=err)


def _version_of(response: Any) -> str:
    """The resourceVersion in an unparsed answer (read whole, so its connection is reused)."""
    body = json.loads(response.data or b"{}")
    return str((body.get("metadata") or {}).get("resourceVersion") or "")


def _discard(response: Any) -> None:
    """Read an unparsed answer to its end: only then does its connection go back to the pool. Left
    unread, every call opened a new TLS connection, a handshake and a client-certificate check on
    both ends (most of the agent's CPU with 50 pods starting and ending)."""
    response.data  # noqa: B018 - reading is the point

"""One pod bound to one of the agent's nodes: its lifecycle, as the kubelet would drive it.

A worker thread per pod: prepare (IP, volumes, env), run init containers in order, start the
containers, watch them (exits, restarts per restartPolicy with back-off, probes, activeDeadline),
write the pod status on every transition, and on deletion stop the processes within the grace
period (SIGTERM, then SIGKILL) and confirm the deletion with grace 0, which only the kubelet does.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubenas_dev.cluster.agent.container import ContainerRuntime, Terminated, now_rfc3339
from kubenas_dev.cluster.agent.spec import ConfigError, Lookups, materialize_volumes, process_spec
from kubenas_dev.cluster.log import get_logger

log = get_logger("kubenas_dev.cluster.agent.pod")

HOST_IP = "127.0.0.1"
TICK = 0.1
#: between checks of a pod whose containers only run (no probes, no back-off): their exit wakes it at once
IDLE_TICK = 1.0


@dataclass
class Fault:
    kind: str  # kill | evict
    container: str | None = None
    exit_code: int = 137
    reason: str | None = None
    message: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class PodContext:
    """What a worker needs from the agent, passed explicitly to keep the worker testable."""

    pods_dir: Path
    lookups: Lookups
    patch_status: Callable[[str, str, dict[str, Any]], str]  # → the pod's resourceVersion after the write
    delete_pod: Callable[[str, str, str], None]
    emit_event: Callable[[dict[str, Any], str, str, str], None]
    allocate_ip: Callable[[], str]
    release_ip: Callable[[str], None]
    node_capacity: Callable[[str], dict[str, str]]
    server: str
    ca_file: str
    cluster_id: str
    backoff_initial: float
    backoff_max: float


class PodWorker(threading.Thread):
    def __init__(self, pod: dict[str, Any], ctx: PodContext) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.pod = pod
        self.ctx = ctx
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.node: str = pod["spec"]["nodeName"]
        self.ip = ""
        self.pod_dir = ctx.pods_dir / f"{self.namespace}_{self.pod_name}_{self.uid[:8]}"
        self.faults: queue.Queue[Fault] = queue.Queue()
        self.stop_event = threading.Event()  # agent shutdown: kill, do not report
        self.vanished = threading.Event()  # the pod object is gone (force deletion)
        self._updated = threading.Event()
        self._lock = threading.Lock()
        self.inits = [ContainerRuntime(c, self.uid, init=True) for c in pod["spec"].get("initContainers", []) or []]
        self.containers = [ContainerRuntime(c, self.uid) for c in pod["spec"]["containers"]]
        self.phase = "Pending"
        self.reason = ""
        self.message = ""
        self.start_time = now_rfc3339()
        self.initialized = not self.inits
        self.conditions_extra: list[dict[str, Any]] = []
        self.finished = False
        #: the final status is on the server: from now on the agent, not this worker, answers for the pod
        self.exiting = False
        self._last_status: dict[str, Any] | None = None
        self._written_version = 0  # resourceVersion of the pod after this worker's last status write
        self._transitions: dict[str, tuple[str, str]] = {}  # condition type -> (status, since)

    # ---- inputs from the agent

    def update(self, pod: dict[str, Any]) -> bool:
        """Hand the worker the pod's newest copy; False once it is exiting (the agent then acts).

        A Ready condition that differs from ours in a copy newer than our last write was changed by
        someone else (the node lifecycle controller marks every pod of a node it thinks is down not
        ready): as the kubelet's status manager does, the worker writes its own status again.
        """
        with self._lock:
            if self.exiting:
                return False
            self.pod = pod
            newer = self._last_status is not None and _version(pod) > self._written_version
            if newer and _ready(pod.get("status") or {}) != _ready(self._last_status or {}):
                self._last_status = None
        self._updated.set()
        return True

    @property
    def deletion_grace(self) -> float | None:
        with self._lock:
            meta = self.pod["metadata"]
        if not meta.get("deletionTimestamp"):
            return None
        return float(meta.get("deletionGracePeriodSeconds") or 0)

    def summary(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.pod_name,
            "uid": self.uid,
            "node": self.node,
            "ip": self.ip,
            "phase": self.phase,
            "dir": str(self.pod_dir),
            "containers": {
                c.name: (c.process.pid if c.process and c.running else None) for c in self.inits + self.containers
            },
        }

    # ---- the loop

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:
            log.error("pod worker crashed", pod=self.name, error=exc, exc_info=True)
        finally:
            self._stop_all(signal.SIGKILL, 0)
            if self.ip:
                self.ctx.release_ip(self.ip)
            self.finished = True

    def _run(self) -> None:
        self.pod_dir.mkdir(parents=True, exist_ok=True)
        spec = self.pod["spec"]
        self.ip = HOST_IP if spec.get("hostNetwork") else self.ctx.allocate_ip()
        self.push_status()
        volumes = self._prepare()
        if volumes is None:
            return
        deadline = spec.get("activeDeadlineSeconds")
        started = time.monotonic()
        while not self.stop_event.is_set():
            if self.vanished.is_set():
                return
            grace = self.deletion_grace
            if grace is not None:
                self._remove(grace)
                return
            self._handle_faults()
            if self.phase in ("Succeeded", "Failed"):
                # Finished: once the final status is written the thread ends; the agent confirms the
                # pod's deletion later (GC, Job cleanup, namespace). Thousands of finished pods must
                # not keep a thread each, waking every second.
                if self.push_status():
                    with self._lock:
                        self.exiting = True
                    if self.deletion_grace is not None:
                        self._remove(0)
                    return
                self._updated.wait(1.0)
                self._updated.clear()
                continue
            if deadline is not None and time.monotonic() - started > float(deadline):
                self._fail_all("DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
                continue
            if not self.initialized:
                self._step_init(volumes)
            else:
                self._step_containers(volumes)
            self.push_status()
            self._updated.wait(self._tick())
            self._updated.clear()

    def _tick(self) -> float:
        """Short ticks while something needs watching (init containers, probes, a start or a back-off);
        long ones while the containers only run, since a process's exit wakes the loop at once."""
        if not self.initialized:
            return TICK
        for c in self.containers:
            if not c.done and (not c.running or c.readiness is not None or c.liveness is not None):
                return TICK
        return IDLE_TICK

    def _wake_on_exit(self, c: ContainerRuntime) -> None:
        """Wake the loop when the container's process ends (``Popen.poll`` stays correct meanwhile)."""
        process = c.process
        if process is None:
            return

        def wait() -> None:
            try:
                process.wait()
            except Exception as exc:  # never lose the wake-up: the loop reaps on its next tick anyway
                log.debug("process wait failed", pod=self.name, error=exc)
            self._updated.set()

        threading.Thread(target=wait, name=f"exit {self.name}/{c.name}", daemon=True).start()

    def _prepare(self) -> dict[str, Path] | None:
        """Volumes, retried while a referenced object is missing (CreateContainerConfigError)."""
        while not self.stop_event.is_set() and not self.vanished.is_set():
            if self.deletion_grace is not None:
                self._remove(0)
                return None
            try:
                return materialize_volumes(self.pod, self.pod_dir, self.ctx.lookups, self.ip, HOST_IP)
            except ConfigError as err:
                for c in self.inits + self.containers:
                    c.waiting_reason, c.waiting_message = "CreateContainerConfigError", str(err)
                self.push_status()
                time.sleep(1.0)
            except Exception as exc:  # the API server is away (restart, overload): the kubelet retries too
                log.warning("volume setup failed, retrying", pod=self.name, error=exc)
                time.sleep(1.0)
        return None

    def _start(self, c: ContainerRuntime, volumes: dict[str, Path]) -> bool:
        with self._lock:
            pod = self.pod
        try:
            pspec = process_spec(
                pod,
                c.spec,
                pod_dir=self.pod_dir,
                volumes=volumes,
                lookups=self.ctx.lookups,
                pod_ip=self.ip,
                host_ip=HOST_IP,
                node_capacity=self.ctx.node_capacity(self.node),
                server=self.ctx.server,
                ca_file=self.ctx.ca_file,
                cluster_id=self.ctx.cluster_id,
            )
            c.start(pspec)
            self._wake_on_exit(c)
        except ConfigError as err:
            c.waiting_reason, c.waiting_message = "CreateContainerConfigError", str(err)
            c.backoff_until = time.monotonic() + 1.0
            return False
        except OSError as err:  # executable missing, bad working dir, ...
            c.last = Terminated(128, "StartError", str(err), now_rfc3339(), now_rfc3339(), c.container_id)
            c.process = None
            return self._after_exit(c, c.last)
        log.info(
            "container started",
            pod=self.name,
            container=c.name,
            pid=c.process.pid if c.process else 0,
            ip=self.ip,
            restart=c.restart_count,
        )
        self.ctx.emit_event(self.pod, "Normal", "Started", f"Started container {c.name}")
        return True

    def _restart_policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy", "Always"))

    def _after_exit(self, c: ContainerRuntime, term: Terminated) -> bool:
        """Decide restart or done after ``term``; returns False (the container is not running)."""
        policy = self._restart_policy()
        if c.init:
            restart = term.exit_code != 0 and policy != "Never"
        else:
            restart = policy == "Always" or (policy == "OnFailure" and term.exit_code != 0)
        log.info(
            "container exited",
            pod=self.name,
            container=c.name,
            exit_code=term.exit_code,
            reason=term.reason,
            restart=restart,
        )
        if restart:
            c.previous = term
            c.backoff = min(self.ctx.backoff_max, c.backoff * 2) if c.backoff else self.ctx.backoff_initial
            c.backoff_until = time.monotonic() + c.backoff
            c.waiting_reason = "CrashLoopBackOff"
            c.waiting_message = f"back-off {c.backoff:.0f}s restarting failed container={c.name} pod={self.pod_name}"
            self.ctx.emit_event(self.pod, "Warning", "BackOff", "Back-off restarting failed container")
        else:
            c.done = True
        return False

    def _step_init(self, volumes: dict[str, Path]) -> None:
        for c in self.inits:
            if c.done and c.last and c.last.exit_code == 0:
                continue
            if c.done:  # failed, no restart: the pod fails
                self._finish("Failed")
                return
            if c.running:
                term = c.reap()
                if term:
                    self._after_exit(c, term)
                return
            if time.monotonic() >= c.backoff_until:
                if c.last is not None:
                    c.restart_count += 1
                self._start(c, volumes)
            return
        self.initialized = True

    def _step_containers(self, volumes: dict[str, Path]) -> None:
        for c in self.containers:
            if c.done:
                continue
            if c.running:
                if c.run_probes(self.ip):
                    log.info("liveness probe failed; restarting", pod=self.name, container=c.name)
                    self._stop_one(c, float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))
                continue
            term = c.reap()
            if term:
                self._after_exit(c, term)
                continue
            if time.monotonic() >= c.backoff_until:
                if c.last is not None:
                    c.restart_count += 1
                self._start(c, volumes)
        if all(c.done for c in self.containers):
            failed = any(c.last and c.last.exit_code != 0 for c in self.containers)
            self._finish("Failed" if failed else "Succeeded")
        elif any(c.running for c in self.containers) or any(c.last for c in self.containers):
            self.phase = "Running"

    def _finish(self, phase: str, reason: str = "", message: str = "") -> None:
        self.phase, self.reason, self.message = phase, reason, message
        self.push_status()
        log.info("pod finished", pod=self.name, phase=phase, reason=reason)

    # ---- stopping

    def _stop_one(self, c: ContainerRuntime, grace: float, sig: signal.Signals = signal.SIGTERM) -> None:
        if not c.running:
            return
        c.signal_group(sig)
        deadline = time.monotonic() + grace
        while c.running and time.monotonic() < deadline:
            time.sleep(0.05)
        if c.running:
            c.signal_group(signal.SIGKILL)
            while c.running:
                time.sleep(0.02)

    def _stop_all(self, sig: signal.Signals, grace: float) -> list[Terminated]:
        """Signal every running container, wait up to ``grace``, SIGKILL the rest; reap them all."""
        running = [c for c in self.inits + self.containers if c.running]
        for c in running:
            c.signal_group(sig)
        deadline = time.monotonic() + grace
        while any(c.running for c in running) and time.monotonic() < deadline:
            time.sleep(0.05)
        for c in running:
            if c.running:
                c.signal_group(signal.SIGKILL)
        terms = []
        for c in running:
            while c.running:
                time.sleep(0.02)
            term = c.reap()
            if term:
                c.done = True
                terms.append(term)
        return terms

    def _fail_all(self, reason: str, message: str) -> None:
        self._stop_all(signal.SIGKILL, 0)
        for c in self.inits + self.containers:
            c.done = True
        self._finish("Failed", reason, message)

    def _remove(self, grace: float) -> None:
        """Graceful deletion: SIGTERM, grace period, SIGKILL, final status, then delete with grace 0."""
        was_terminal = self.phase in ("Succeeded", "Failed")
        if not was_terminal:
            self.ctx.emit_event(self.pod, "Normal", "Killing", "Stopping container(s)")
            self._stop_all(signal.SIGTERM, grace)
            for c in self.inits + self.containers:
                c.done = True
            # Succeeded only if every container ran and exited 0; a pod deleted before it ran failed.
            failed = any(c.last is None or c.last.exit_code != 0 for c in self.containers)
            self._finish("Failed" if failed else "Succeeded")
        self.ctx.delete_pod(self.namespace, self.pod_name, self.uid)
        log.info("pod deleted", pod=self.name, grace=grace)

    def _handle_faults(self) -> None:
        while True:
            try:
                fault = self.faults.get_nowait()
            except queue.Empty:
                return
            try:
                fault.result = self._apply_fault(fault)
            finally:
                fault.done.set()

    def _apply_fault(self, fault: Fault) -> dict[str, Any]:
        if fault.kind == "evict":
            self._stop_all(signal.SIGKILL, 0)
            for c in self.inits + self.containers:
                c.done = True
            message = fault.message or "The node was low on resource: memory. "
            self.conditions_extra = [
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "TerminationByKubelet",
                    "message": message,
                    "lastTransitionTime": now_rfc3339(),
                }
            ]
            self.ctx.emit_event(self.pod, "Warning", "Evicted", message)
            self._finish("Failed", "Evicted", message)
            return {"evicted": self.name}
        targets = [c for c in self.inits + self.containers if c.running and (fault.container in (None, c.name))]
        if not targets:
            return {"killed": []}
        for c in targets:
            c.kill(fault.exit_code, fault.reason or "")
        killed = []
        for c in targets:
            while c.running:
                time.sleep(0.02)
            term = c.reap()
            if term:
                killed.append(c.name)
                self._after_exit(c, term)
        return {"killed": killed, "exit_code": fault.exit_code}

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.pod_name}"

    # ---- status

    def build_status(self) -> dict[str, Any]:
        now = now_rfc3339()
        terminal = self.phase in ("Succeeded", "Failed")
        containers_ready = all(c.running and c.ready for c in self.containers)
        ready_reason = "PodCompleted" if terminal else ("" if containers_ready else "ContainersNotReady")

        def cond(kind: str, ok: bool, reason: str = "") -> dict[str, Any]:
            value = "True" if ok else "False"
            previous = self._transitions.get(kind)
            since = previous[1] if previous and previous[0] == value else now
            self._transitions[kind] = (value, since)
            # a condition that turns True drops its old reason: a strategic merge patch keeps every
            # key it does not name, so the reason is named, as null
            reason_now = reason if reason and not ok else None
            return {"type": kind, "status": value, "lastTransitionTime": since, "reason": reason_now}

        status: dict[str, Any] = {
            "phase": self.phase,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}] if self.ip else [],
            "startTime": self.start_time,
            "qosClass": self.pod.get("status", {}).get("qosClass", "BestEffort"),
            "conditions": [
                cond("PodReadyToStartContainers", bool(self.ip)),
                cond("Initialized", self.initialized or terminal, "ContainersNotInitialized"),
                cond("ContainersReady", containers_ready and not terminal, ready_reason),
                cond("Ready", containers_ready and not terminal, ready_reason),
                *self.conditions_extra,
            ],
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.inits:
            status["initContainerStatuses"] = [c.status() for c in self.inits]
        if self.reason:
            status["reason"] = self.reason
        if self.message:
            status["message"] = self.message
        return status

    def push_status(self) -> bool:
        """Write the status if it changed; True when the server holds it."""
        status = self.build_status()
        with self._lock:
            if self._last_status is not None and self._last_status == status:
                return True
        try:
            version = self.ctx.patch_status(self.namespace, self.pod_name, status)
        except Exception as exc:  # the pod may be gone; the next tick retries otherwise
            log.warning("status update failed", pod=self.name, error=exc)
            return False
        with self._lock:
            self._last_status = status
            self._written_version = int(version or 0)
        return True


def _version(pod: dict[str, Any]) -> int:
    try:
        return int((pod.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _ready(status: dict[str, Any]) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status"))
    return None

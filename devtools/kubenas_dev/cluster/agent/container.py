"""One container of a pod as a host process: start, watch, stop, restart, report.

Each container instance is its own session (process group), so stopping it reaches every process
it forked. Exit statuses are reported as a container runtime would: a process killed by signal N
exits ``128 + N`` (143 after SIGTERM, 137 after SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubenas_dev.cluster.agent.spec import ProcessSpec

MAX_MESSAGE = 4096  # the kubelet's cap on termination messages
FALLBACK_LOG_BYTES, FALLBACK_LOG_LINES = 2048, 80


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Terminated:
    exit_code: int
    reason: str
    message: str
    started_at: str
    finished_at: str
    container_id: str
    signal: int | None = None

    def as_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": self.container_id,
        }
        if self.message:
            state["message"] = self.message
        if self.signal:
            state["signal"] = self.signal
        return state


@dataclass
class Probe:
    """A readiness or liveness probe (exec, httpGet, tcpSocket) and its running tally."""

    spec: dict[str, Any]
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds", 10))

    @property
    def timeout(self) -> float:
        return float(self.spec.get("timeoutSeconds", 1))


@dataclass
class ContainerRuntime:
    """The runtime state of one container across restarts."""

    spec: dict[str, Any]
    pod_uid: str
    init: bool = False
    restart_count: int = 0
    process: subprocess.Popen[bytes] | None = None
    proc_spec: ProcessSpec | None = None
    started_at: str = ""
    started_mono: float = 0.0
    last: Terminated | None = None  # the most recent termination
    previous: Terminated | None = None  # lastState once restarted
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    backoff_until: float = 0.0
    backoff: float = 0.0
    ready: bool = False
    injected: tuple[int, str] | None = None  # exit code and reason a fault asked for
    readiness: Probe | None = None
    liveness: Probe | None = None
    done: bool = False  # terminated and will not restart
    history: list[Terminated] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def container_id(self) -> str:
        return f"kubenas://{self.pod_uid[:8]}-{self.name}-{self.restart_count}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_path(self) -> Path:
        assert self.proc_spec is not None
        return self.proc_spec.log_dir / f"{self.restart_count}.log"

    # ---- lifecycle

    def start(self, spec: ProcessSpec) -> None:
        self.proc_spec = spec
        spec.termination_file.parent.mkdir(parents=True, exist_ok=True)
        spec.termination_file.write_bytes(b"")  # a fresh file per container instance
        with self.log_path().open("ab") as out:
            self.process = subprocess.Popen(
                spec.argv,
                cwd=spec.cwd,
                env=spec.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = now_rfc3339()
        self.started_mono = time.monotonic()
        self.waiting_reason = self.waiting_message = ""
        self.ready = False
        self.injected = None
        self.readiness = self._new_probe("readinessProbe")
        self.liveness = self._new_probe("livenessProbe")
        self.ready = self.readiness is None  # no readiness probe: ready once started, like the kubelet

    def _new_probe(self, kind: str) -> Probe | None:
        spec = self.spec.get(kind)
        if not spec:
            return None
        return Probe(spec, next_at=time.monotonic() + float(spec.get("initialDelaySeconds", 0)))

    def signal_group(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def kill(self, exit_code: int, reason: str) -> None:
        """A fault: SIGKILL now, and report ``exit_code``/``reason`` instead of 137."""
        self.injected = (exit_code, reason)
        self.signal_group(signal.SIGKILL)

    def reap(self) -> Terminated | None:
        """If the process has exited, record its termination and return it."""
        if self.process is None:
            return None
        code = self.process.poll()
        if code is None:
            return None
        # The group may hold children the main process left behind: a container ends with its group.
        self.signal_group(signal.SIGKILL)
        sig = -code if code < 0 else None
        exit_code = 128 + sig if sig else code
        reason = "Completed" if exit_code == 0 else "Error"
        if self.injected:
            exit_code, injected_reason = self.injected
            reason = injected_reason or ("Completed" if exit_code == 0 else "Error")
            sig = None
        message = self.termination_message(exit_code)
        term = Terminated(exit_code, reason, message, self.started_at, now_rfc3339(), self.container_id, sig)
        self.process = None
        self.ready = False
        self.last = term
        self.history.append(term)
        return term

    def termination_message(self, exit_code: int) -> str:
        assert self.proc_spec is not None
        try:
            message = self.proc_spec.termination_file.read_bytes()[:MAX_MESSAGE].decode(errors="replace")
        except OSError:
            message = ""
        policy = self.spec.get("terminationMessagePolicy", "File")
        if not message and exit_code != 0 and policy == "FallbackToLogsOnError":
            try:
                tail = self.log_path().read_bytes()[-FALLBACK_LOG_BYTES:].decode(errors="replace")
            except OSError:
                tail = ""
            message = "\n".join(tail.splitlines()[-FALLBACK_LOG_LINES:])
        return message

    # ---- probes

    def run_probes(self, pod_ip: str) -> bool:
        """Run due probes; return True if the liveness probe says the container must restart."""
        now = time.monotonic()
        if self.readiness and now >= self.readiness.next_at:
            ok = self._probe(self.readiness, pod_ip)
            self._tally(self.readiness, ok)
            if self.readiness.successes >= int(self.readiness.spec.get("successThreshold", 1)):
                self.ready = True
            if self.readiness.failures >= int(self.readiness.spec.get("failureThreshold", 3)):
                self.ready = False
        if self.liveness and now >= self.liveness.next_at:
            ok = self._probe(self.liveness, pod_ip)
            self._tally(self.liveness, ok)
            if self.liveness.failures >= int(self.liveness.spec.get("failureThreshold", 3)):
                return True
        return False

    @staticmethod
    def _tally(probe: Probe, ok: bool) -> None:
        probe.next_at = time.monotonic() + probe.period
        if ok:
            probe.successes, probe.failures = probe.successes + 1, 0
        else:
            probe.successes, probe.failures = 0, probe.failures + 1

    def _port(self, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in self.spec.get("ports", []) or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        return 0

    def _probe(self, probe: Probe, pod_ip: str) -> bool:
        spec = probe.spec
        try:
            if "exec" in spec:
                assert self.proc_spec is not None
                result = subprocess.run(
                    spec["exec"]["command"],
                    env=self.proc_spec.env,
                    cwd=self.proc_spec.cwd,
                    capture_output=True,
                    timeout=probe.timeout,
                )
                return result.returncode == 0
            if "httpGet" in spec:
                get = spec["httpGet"]
                host = get.get("host") or pod_ip
                url = f"{get.get('scheme', 'HTTP').lower()}://{host}:{self._port(get['port'])}{get.get('path', '/')}"
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(url, timeout=probe.timeout) as resp:
                    return 200 <= resp.status < 400
            if "tcpSocket" in spec:
                sock = spec["tcpSocket"]
                with socket.create_connection((sock.get("host") or pod_ip, self._port(sock["port"])), probe.timeout):
                    return True
        except Exception:
            return False
        return True

    # ---- status

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "restartCount": self.restart_count,
            "ready": bool(self.running and self.ready),
            "started": self.running,
        }
        if self.running:
            status["state"] = {"running": {"startedAt": self.started_at}}
            status["containerID"] = self.container_id
        elif self.done and self.last:
            status["state"] = {"terminated": self.last.as_state()}
            status["containerID"] = self.last.container_id
        else:
            waiting: dict[str, Any] = {"reason": self.waiting_reason or "ContainerCreating"}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            status["state"] = {"waiting": waiting}
        if self.previous and not (self.done and self.previous is self.last):
            status["lastState"] = {"terminated": self.previous.as_state()}
        else:
            status["lastState"] = {}
        return status

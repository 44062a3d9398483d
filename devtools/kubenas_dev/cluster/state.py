"""What a running cluster leaves on disk, and how its processes are found again.

``kubenas cluster up`` exits while the cluster keeps running, so ``status`` and ``down`` (maybe from
another shell) need the PIDs, ports and paths: they live in ``<cluster dir>/state.json``.

PIDs alone are not a safe way to find processes (they get reused, pods' processes fork), so every
process the cluster starts, pods' processes included, carries ``KUBENAS_DEVCLUSTER_ID=<id>`` in its
environment. ``down`` kills exactly the processes with that marker, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kubenas_dev.cluster.errors import ClusterNotRunningError

MARKER_ENV = "KUBENAS_DEVCLUSTER_ID"
STATE_FILE = "state.json"


@dataclass
class ClusterState:
    """The contract between the launcher, the CLI, the node agent and the pytest fixtures."""

    cluster_id: str
    cluster_dir: str
    kubeconfig: str
    server: str
    ports: dict[str, int]
    pids: dict[str, int]
    fault_url: str
    fault_token: str
    nodes: list[str]
    versions: dict[str, str]
    started_at: float
    start_seconds: float = 0.0
    kubectl: str = "kubectl"
    helm: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def path_in(cls, cluster_dir: Path) -> Path:
        return cluster_dir / STATE_FILE

    @classmethod
    def load(cls, cluster_dir: Path) -> ClusterState:
        path = cls.path_in(cluster_dir)
        if not path.exists():
            raise ClusterNotRunningError(str(cluster_dir))
        return cls(**json.loads(path.read_text()))

    def save(self) -> None:
        path = self.path_in(Path(self.cluster_dir))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not running anything.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (field 3 onwards); None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far; 0 once it is gone (Linux /proc)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int, zombies: bool = False) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc); exited, unreaped ones only if asked."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))  # fields[0]: state, fields[1]: parent pid
            if fields is not None and int(fields[1]) == pid and (zombies or fields[0] != "Z"):
                found.append(int(entry.name))
    return found


def children_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU of what ``pid`` started: its live children by pid, and under key 0 the children it has
    already reaped (the kernel adds a child's time to its parent's when the parent waits for it).
    For the node agent these are the pods' processes."""
    fields = _stat_fields(pid)
    if fields is None:
        return {}
    out = {0: (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")}
    for child in child_pids(pid, zombies=True):  # an unreaped child's time is not in ours yet
        out[child] = cpu_seconds(child)
    return out


def machine_busy_seconds() -> float:
    """CPU seconds the machine's cores have spent busy since boot (Linux /proc/stat): user, nice,
    system, irq and softirq, whoever ran."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = (values + [0] * 7)[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def processes_with_marker(cluster_id: str) -> list[int]:
    """PIDs of live processes whose environment carries this cluster's marker."""
    needle = f"{MARKER_ENV}={cluster_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def terminate(pids: list[int], grace: float) -> list[int]:
    """SIGTERM ``pids``, SIGKILL what is left after ``grace`` seconds; return the ones killed hard."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    stubborn = [p for p in pids if pid_alive(p)]
    for pid in stubborn:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(pid_alive(p) for p in stubborn):
        time.sleep(0.05)
    for pid in pids:
        _reap(pid)
    return stubborn


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child, so no zombie outlives the cluster."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)

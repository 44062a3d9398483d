"""The operator benchmark's moving parts: a cluster, the CRDs, the operator, a pod watch, one experiment.

See ``kubenas_dev.opbench.figures`` for what is measured and why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kubenas.operator import names
from kubenas_dev.opbench.figures import BenchResult, trial_command, turnarounds
from kubenas_dev.operator_testing import Kube, OperatorProcess, experiment_manifest, install_crds, wait_for

log = logging.getLogger("kubenas.bench")


class TrainerWatch:
    """Timestamps, on the watch's clock, each trainer Job's and Pod's first sight and each trainer's end."""

    def __init__(self, kubeconfig: Path, namespace: str, on_end: Callable[[int], None] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.on_end = on_end  # called with the number of trainer ends seen, at each new one
        self.namespace = namespace
        self.job_created: dict[str, float] = {}  # job name → first sight
        self.created: dict[str, float] = {}  # pod uid → first sight
        self.pod_job: dict[str, str] = {}  # pod uid → job name
        self.terminated: dict[str, float] = {}  # pod uid → trainer's end seen
        self._ready = threading.Barrier(3, timeout=30)
        self._stop = False
        self._threads = [
            threading.Thread(target=self._watch, args=("pods",), name="pod watch", daemon=True),
            threading.Thread(target=self._watch, args=("jobs",), name="job watch", daemon=True),
        ]

    def __enter__(self) -> TrainerWatch:
        for t in self._threads:
            t.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        for t in self._threads:
            t.join(10)

    def _watch(self, kind: str) -> None:
        from kubernetes import client, config, watch

        with config.new_client_from_config(str(self.kubeconfig)) as api:
            lister = (
                client.CoreV1Api(api).list_namespaced_pod
                if kind == "pods"
                else client.BatchV1Api(api).list_namespaced_job
            )
            selector = f"{names.LABEL_COMPONENT}={names.COMPONENT_TRAINER}"
            version = lister(self.namespace, label_selector=selector).metadata.resource_version
            observe = self._observe_pod if kind == "pods" else self._observe_job
            w = watch.Watch()
            self._ready.wait()
            while not self._stop:
                for event in w.stream(
                    lister,
                    self.namespace,
                    label_selector=selector,
                    resource_version=version,
                    timeout_seconds=5,
                    deserialize=False,
                ):
                    obj = event["object"]  # a plain dict: no model deserialization on the clock's path
                    observe(obj, time.monotonic())
                    version = obj["metadata"]["resourceVersion"]
                    if self._stop:
                        w.stop()
                        break

    def _observe_job(self, job: dict[str, Any], now: float) -> None:
        self.job_created.setdefault(job["metadata"]["name"], now)

    def _observe_pod(self, pod: dict[str, Any], now: float) -> None:
        uid = pod["metadata"]["uid"]
        self.created.setdefault(uid, now)
        self.pod_job.setdefault(uid, (pod["metadata"].get("labels") or {}).get(names.LABEL_TRIAL, ""))
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = cs.get("name") == names.TRAINER_CONTAINER and "terminated" in (cs.get("state") or {})
            if ended and uid not in self.terminated:
                self.terminated[uid] = now
                if self.on_end is not None:
                    self.on_end(len(self.terminated))

    def job_to_pod_ms(self) -> list[float]:
        """For each Job, from its first sight to its first pod's: the Job controller and scheduler's part."""
        first: dict[str, float] = {}
        for uid, job in self.pod_job.items():
            first[job] = min(first.get(job, float("inf")), self.created[uid])
        return [(first[j] - t) * 1000 for j, t in self.job_created.items() if j in first]


def cluster_processes(kubeconfig: Path) -> dict[str, int]:
    """The processes of a development cluster by component (API server, etcd, ...), found from the
    state file beside its kubeconfig; none for any other cluster."""
    from kubenas_dev.cluster.errors import ClusterNotRunningError
    from kubenas_dev.cluster.state import ClusterState, pid_alive

    try:
        state = ClusterState.load(kubeconfig.parent)
    except (ClusterNotRunningError, OSError, TypeError, ValueError):
        return {}
    return {name: pid for name, pid in state.pids.items() if name != "watchdog" and pid_alive(pid)}


class CpuMeter:
    """CPU seconds spent between its creation and ``spent``: by each named process; by the pods
    (whatever the node agent started, when there is one); by this benchmark process; and by the
    whole machine, whoever ran."""

    def __init__(self, pids: dict[str, int]) -> None:
        from kubenas_dev.cluster import state

        self._state = state
        self.pids = pids
        self.before = {name: state.cpu_seconds(pid) for name, pid in pids.items()}
        agent = pids.get("node-agent")
        self._pods_before = state.children_cpu_seconds(agent) if agent else {}
        self._self_before = time.process_time()
        self._machine_before = state.machine_busy_seconds()

    def spent(self) -> dict[str, float]:
        """Per process, plus ``pods`` when the agent is known."""
        out = {name: max(0.0, self._state.cpu_seconds(pid) - self.before[name]) for name, pid in self.pids.items()}
        agent = self.pids.get("node-agent")
        if agent:
            now = self._state.children_cpu_seconds(agent)
            # a child alive at the start and reaped since moved its whole time into the reaped total
            out["pods"] = max(0.0, sum(now.values()) - sum(self._pods_before.values()))
        return out

    def benchmark(self) -> float:
        """CPU this process (the watch that times the pods) has used."""
        return time.process_time() - self._self_before

    def machine(self) -> float:
        return self._state.machine_busy_seconds() - self._machine_before


class WindowMeter:
    """The operator's CPU seconds at every ``window``-th trainer end (fed by the pod watch's thread).

    One /proc read per window, at the moment the watch sees the end that closes it: the marks say
    what the operator spent for each slice of the history, so growth with the history shows within
    one run.
    """

    def __init__(self, pid: int, window: int) -> None:
        from kubenas_dev.cluster.state import cpu_seconds

        self._cpu = cpu_seconds
        self.pid = pid
        self.window = max(1, window)
        self.marks: list[tuple[int, float]] = [(0, 0.0)]
        self._start = cpu_seconds(pid)

    def on_end(self, ends: int) -> None:
        if ends % self.window == 0:
            self.marks.append((ends, self._cpu(self.pid) - self._start))


def memory_bytes(pid: int) -> tuple[int | None, int | None]:
    """A process's peak and current resident memory (``VmHWM``, ``VmRSS`` from /proc; None if gone)."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0]) * 1024  # the kernel reports kB
    return found.get("VmHWM"), found.get("VmRSS")


def largest_objects(kube: Kube, experiment: str) -> dict[str, int]:
    """The largest object of each kind the operator writes for ``experiment``, as compact JSON bytes.

    Read back from the API server (with what it added: managed fields, status), page by page, so a
    run of many trials does not hold every Trial at once.
    """
    label = f"{names.LABEL_EXPERIMENT}={experiment}"
    group, version = "kubenas.io", "v1alpha1"
    listers: dict[str, Callable[..., Any]] = {
        "SearchExperiment": lambda **kw: kube.custom.list_namespaced_custom_object(
            group, version, kube.namespace, names.PLURAL_EXPERIMENTS, **kw
        ),
        "Trial": lambda **kw: kube.custom.list_namespaced_custom_object(
            group, version, kube.namespace, names.PLURAL_TRIALS, label_selector=label, **kw
        ),
        "Job": lambda **kw: kube.batch.list_namespaced_job(kube.namespace, label_selector=label, **kw),
        "Secret": lambda **kw: kube.core.list_namespaced_secret(
            kube.namespace, field_selector=f"metadata.name={names.controller_name(experiment)}", **kw
        ),
    }
    out: dict[str, int] = {}
    for kind, lister in listers.items():
        token: str | None = None
        while True:
            page = json.loads(lister(limit=500, _continue=token, _preload_content=False).data)
            for item in page.get("items") or []:
                size = len(json.dumps(item, separators=(",", ":")).encode())
                out[kind] = max(out.get(kind, 0), size)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
    return out


@contextlib.contextmanager
def sampled(pid: int, out: Path | None) -> Iterator[None]:
    """py-spy samples ``pid`` while the block runs (nothing without ``out``); the profile is written
    when the block ends. A sampling profiler from outside: the operator runs unchanged."""
    if out is None:
        yield
        return
    import shutil
    import signal
    import subprocess

    exe = shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("--py-spy needs py-spy on PATH (pip install py-spy)")
    argv = [exe, "record", "--pid", str(pid), "--format", "speedscope", "--output", str(out), "--rate", "50"]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its profile on an interrupt
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


@contextlib.contextmanager
def cluster_kubeconfig(kubeconfig: Path | None, workdir: Path) -> Iterator[Path]:
    """The given cluster, or a development cluster started (and stopped) for the benchmark."""
    if kubeconfig is not None:
        yield kubeconfig
        return
    from kubenas_dev.cluster.launcher import Cluster, StartOptions

    cluster = Cluster.start(workdir / "cluster", StartOptions(owner_pid=os.getpid()))
    try:
        yield cluster.kubeconfig
    finally:
        cluster.stop(remove=True)


def run_bench(
    trials: int,
    parallel: int,
    kubeconfig: Path | None,
    trial_seconds: float = 0.0,
    window: int = 0,
    profile: Path | None = None,
) -> BenchResult:
    """One experiment of ``trials`` zero-cost (or idle) trials; ``window``: trials per CPU window
    (0: a tenth of the run, at least 50); ``profile``: where py-spy writes the operator's profile."""
    with tempfile.TemporaryDirectory(prefix="kubenas-bench-") as tmp, cluster_kubeconfig(kubeconfig, Path(tmp)) as kc:
        install_crds(kc)
        namespace = f"bench-{secrets.token_hex(3)}"
        kube = Kube(kc, namespace)
        kube.core.create_namespace({"metadata": {"name": namespace}})
        operator = OperatorProcess(kc, Path(tmp) / "operator.log", namespaces=(namespace,)).start()
        try:
            operator_pid = operator.proc.pid if operator.proc else 0
            load_start = os.getloadavg()[0]
            meter = CpuMeter({**cluster_processes(kc), "operator": operator_pid})
            marks = WindowMeter(operator_pid, window or max(50, trials // 10))
            with TrainerWatch(kc, namespace, on_end=marks.on_end) as pods, sampled(operator_pid, profile):
                manifest = experiment_manifest(
                    "bench",
                    max_trials=trials,
                    parallel=parallel,
                    command=trial_command(trial_seconds),
                    search_space={"cell": {"nodes": 4}},  # 5**6 architectures: never exhausted
                )
                kube.apply_experiment(manifest)
                exp = kube.wait_phase("bench", timeout=120 + trials + 1.5 * trials / parallel * trial_seconds)
                wait_for("every trainer pod's end", lambda: len(pods.terminated) >= trials, timeout=30)
            if exp["status"]["phase"] != "Succeeded":
                raise RuntimeError(f"the benchmark experiment ended {exp['status']}; see {operator.log_path}")
            writes = operator.metric("kubenas_api_writes_total")
            passes = operator.metric("kubenas_reconciles_total")
            cpu = meter.spent()
            rss_peak, rss_final = memory_bytes(operator_pid)
            load_end = os.getloadavg()[0]
            largest = largest_objects(kube, "bench")
            first, last = min(pods.created.values()), max(pods.terminated.values())
            return BenchResult(
                trials=trials,
                parallel=parallel,
                turnaround_ms=turnarounds(list(pods.terminated.values()), list(pods.created.values()), parallel),
                seconds=last - first,
                writes=writes,
                passes=passes,
                operator_ms=turnarounds(list(pods.terminated.values()), list(pods.job_created.values()), parallel),
                job_to_pod_ms=pods.job_to_pod_ms(),
                trial_seconds=trial_seconds,
                operator_cpu_s=cpu.pop("operator"),
                cluster_cpu_s=cpu,
                benchmark_cpu_s=meter.benchmark(),
                machine_cpu_s=meter.machine(),
                cpu_marks=marks.marks,
                rss_peak_bytes=rss_peak,
                rss_final_bytes=rss_final,
                largest_bytes=largest,
                load_average=(load_start, load_end),
            )
        finally:
            operator.stop()
            with contextlib.suppress(Exception):
                kube.core.delete_namespace(namespace)
            kube.close()

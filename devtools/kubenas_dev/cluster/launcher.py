"""Start, find and stop one development cluster.

A cluster is a directory: certificates, kubeconfigs, etcd's data, logs, the node agent's pod
directories and ``state.json``. Components run detached (their own sessions), so ``kubenas cluster
up`` can exit and ``down`` from another shell still finds them; with an owner PID (the pytest
run), a watchdog tears the cluster down when the owner dies, however it dies.

Two clusters at once: each has its own directory, CA and pod-IP block, and ports are picked while
holding a machine-wide lock that is released only once the new cluster listens on them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from kubenas_dev.cluster import build, components
from kubenas_dev.cluster.client import api_client
from kubenas_dev.cluster.components import Layout, Ports
from kubenas_dev.cluster.errors import ComponentError, DevClusterError, NotBuiltError
from kubenas_dev.cluster.faults import FaultClient
from kubenas_dev.cluster.log import get_logger
from kubenas_dev.cluster.nodes import DEFAULT_NODES, NodeSpec
from kubenas_dev.cluster.pki import ClusterPKI, write_kubeconfig
from kubenas_dev.cluster.state import (
    MARKER_ENV,
    ClusterState,
    pid_alive,
    processes_with_marker,
    terminate,
)

log = get_logger("kubenas_dev.cluster.launcher")

AGENT_USER = "kubenas:node-agent"
STOP_ORDER = ("watchdog", "node-agent", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")


# --------------------------------------------------------------------------------------------------
# ports


@contextlib.contextmanager
def port_lock() -> Iterator[None]:
    """Held from picking free ports until the components listen on them (two `up`s at once)."""
    run_dir = build.cache_root() / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "ports.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now (all sockets held until all are found)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------------------------------
# health checks


def _https_context(pki: ClusterPKI | None, client_cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    if pki is None:
        # controller-manager and scheduler serve with self-signed certs from their --cert-dir.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    if client_cert:
        ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    return ctx


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str, ctx: ssl.SSLContext | None = None, expect: str | None = None) -> bool:
    """True when ``url`` answers 200 (and contains ``expect``); never through a proxy."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if ctx is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=3) as resp:
            body = resp.read().decode(errors="replace")
            return resp.status == 200 and (expect is None or expect in body)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    interval: float = 0.25,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ComponentError(what, f"exited with {process.returncode}", str(log_path) if log_path else None)
        try:
            if check():
                return
        except Exception as exc:
            log.debug("not ready yet", component=what, error=exc)
        time.sleep(interval)
    raise ComponentError(what, f"not ready after {timeout:.0f}s", str(log_path) if log_path else None)


# --------------------------------------------------------------------------------------------------
# the cluster


@dataclass
class StartOptions:
    nodes: Sequence[NodeSpec] = DEFAULT_NODES
    owner_pid: int | None = None
    timeout: float = 240.0
    allow_build: bool = True


class Cluster:
    """A running development cluster, started here or found through its ``state.json``."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self._api: k8s.ApiClient | None = None
        self._restarted: list[subprocess.Popen[bytes]] = []  # kept so that they are reaped, not warned about

    # ---- attributes tests use

    @property
    def dir(self) -> Path:
        return Path(self.state.cluster_dir)

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state.kubeconfig)

    @property
    def faults(self) -> FaultClient:
        return FaultClient(self.state.fault_url, self.state.fault_token)

    def api_client(self) -> k8s.ApiClient:
        if self._api is None:
            self._api = api_client(self.kubeconfig)
        return self._api

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the cluster's kubectl against it (admin credentials)."""
        cmd = [self.state.kubectl, f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, input=input)

    def pod_dir(self, namespace: str, name: str) -> Path | None:
        """Where the agent keeps a pod's logs and files (``None`` if it never ran here)."""
        matches = sorted((self.dir / "agent" / "pods").glob(f"{namespace}_{name}_*"))
        return matches[-1] if matches else None

    def logs(self, namespace: str, name: str, container: str | None = None) -> str:
        """A pod's container output, as the agent captured it (``kubectl logs`` needs a kubelet)."""
        pod_dir = self.pod_dir(namespace, name)
        if pod_dir is None:
            return ""
        logs = sorted(pod_dir.glob(f"containers/{container or '*'}/*.log"))
        return "".join(p.read_text(errors="replace") for p in logs)

    # ---- lifecycle

    @classmethod
    def attach(cls, cluster_dir: Path) -> Cluster:
        return cls(ClusterState.load(cluster_dir))

    def restart(self, *names: str, down_seconds: float = 0.0, timeout: float = 120.0) -> None:
        """Stop control-plane components and start them again, as a crash or an upgrade of a static pod
        would: the same command line, environment and log; etcd keeps its data directory.

        ``names`` are components of ``STOP_ORDER`` (``etcd``, ``kube-apiserver``, ...). They stop in
        that order (the API server before its store), stay down ``down_seconds``, start in the reverse
        order, and each must answer its health check before the next one starts.
        """
        unknown = set(names) - set(_HEALTH)
        if unknown:
            raise DevClusterError(f"cannot restart {sorted(unknown)}; restartable: {sorted(_HEALTH)}")
        launches: dict[str, tuple[list[str], dict[str, str]]] = {}
        for name in (n for n in STOP_ORDER if n in names):
            pid = self.state.pids[name]
            launches[name] = (_proc_strings(pid, "cmdline"), dict(_proc_env(pid)))
            terminate([pid], grace=5)
        time.sleep(down_seconds)
        layout = Layout(self.dir)
        for name in reversed(list(launches)):
            argv, env = launches[name]
            proc = _detached(layout, name, argv, env)
            self._restarted.append(proc)
            self.state.pids[name] = proc.pid
            self.state.save()
            log.info("restarted", component=name, pid=proc.pid)
            wait_for(name, lambda n=name: _HEALTH[n](self), timeout, proc, layout.log(name))

    def is_running(self) -> bool:
        return all(pid_alive(pid) for name, pid in self.state.pids.items() if name != "watchdog")

    def status(self) -> dict[str, Any]:
        procs = {name: pid_alive(pid) for name, pid in self.state.pids.items()}
        return {
            "cluster_dir": self.state.cluster_dir,
            "kubeconfig": self.state.kubeconfig,
            "server": self.state.server,
            "processes": procs,
            "nodes": self.state.nodes,
            "versions": self.state.versions,
            "start_seconds": self.state.start_seconds,
            "running": self.is_running(),
        }

    def stop(self, remove: bool = True) -> list[int]:
        """Stop every process of this cluster (marker sweep included); remove its directory."""
        me = os.getpid()
        for name in STOP_ORDER:
            pid = self.state.pids.get(name)
            if pid and pid != me and pid_alive(pid):
                terminate([pid], grace=10 if name == "node-agent" else 5)
        leftovers = [p for p in processes_with_marker(self.state.cluster_id) if p != me]
        if leftovers:
            log.warning("killing leftover processes", pids=leftovers)
            terminate(leftovers, grace=2)
        if self._api is not None:
            self._api.close()
            self._api = None
        if remove:
            shutil.rmtree(self.state.cluster_dir, ignore_errors=True)
        log.info("cluster stopped", dir=self.state.cluster_dir, leftovers=len(leftovers))
        return leftovers

    @classmethod
    def start(cls, cluster_dir: Path, options: StartOptions | None = None) -> Cluster:
        opts = options or StartOptions()
        manifest = build.ensure_built() if opts.allow_build else build.toolchain().manifest()
        if manifest is None:
            raise NotBuiltError(str(build.toolchain().home))
        cluster_dir = cluster_dir.resolve()
        _clear_stale(cluster_dir)
        starter = _Starter(cluster_dir, manifest, opts)
        try:
            return cls(starter.run())
        except BaseException:
            starter.abort()
            raise


def _detached(layout: Layout, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A component in its own session (it survives Ctrl-C of `cluster up`; `down` stops it), logging
    to its file."""
    with layout.log(name).open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=layout.root,
            start_new_session=True,
        )


def _proc_strings(pid: int, what: str) -> list[str]:
    """A process's NUL-separated ``/proc`` entry (``cmdline``, ``environ``) as strings."""
    return [part.decode() for part in Path(f"/proc/{pid}/{what}").read_bytes().split(b"\0") if part]


def _proc_env(pid: int) -> Iterator[tuple[str, str]]:
    for entry in _proc_strings(pid, "environ"):
        key, _, value = entry.partition("=")
        yield key, value


def _apiserver_ready(cluster: Cluster) -> bool:
    pki = ClusterPKI(Path(cluster.state.cluster_dir) / "pki")
    admin = (pki.dir / "admin.crt", pki.dir / "admin.key")
    return http_ok(f"{cluster.state.server}/readyz", _https_context(pki, admin))


def _component_healthy(name: str) -> Callable[[Cluster], bool]:
    port_key = name.removeprefix("kube-").replace("-", "_")
    return lambda c: http_ok(f"https://127.0.0.1:{c.state.ports[port_key]}/healthz", _https_context(None, None))


#: how each restartable component says it is back
_HEALTH: dict[str, Callable[[Cluster], bool]] = {
    "etcd": lambda c: http_ok(f"http://127.0.0.1:{c.state.ports['etcd_client']}/health", expect='"health":"true"'),
    "kube-apiserver": _apiserver_ready,
    "kube-controller-manager": _component_healthy("kube-controller-manager"),
    "kube-scheduler": _component_healthy("kube-scheduler"),
}


def _clear_stale(cluster_dir: Path) -> None:
    """Refuse a directory whose cluster still runs; clean one whose cluster died."""
    if ClusterState.path_in(cluster_dir).exists():
        existing = Cluster.attach(cluster_dir)
        if existing.is_running():
            raise DevClusterError(f"a cluster is already running in {cluster_dir}; `kubenas cluster down` first")
        existing.stop(remove=True)
    elif cluster_dir.exists() and any(cluster_dir.iterdir()):
        # Only ever delete what looks like a cluster directory left by a failed start.
        layout = Layout(cluster_dir)
        if not (layout.pki.exists() or layout.logs.exists()):
            raise DevClusterError(f"{cluster_dir} is not empty and not a cluster directory; pick another --dir")
        shutil.rmtree(cluster_dir)


class _Starter:
    """The ordered start of one cluster; ``abort`` undoes whatever was started."""

    def __init__(self, cluster_dir: Path, manifest: build.Manifest, opts: StartOptions) -> None:
        self.layout = Layout(cluster_dir)
        self.manifest = manifest
        self.opts = opts
        self.cluster_id = secrets.token_hex(6)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.bins = {name: Path(path) for name, path in manifest.binaries.items()}

    def abort(self) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                terminate([proc.pid], grace=3)
        for pid in processes_with_marker(self.cluster_id):
            terminate([pid], grace=1)
        if os.environ.get("KUBENAS_KEEP_FAILED_CLUSTER") != "1":
            shutil.rmtree(self.layout.root, ignore_errors=True)

    def spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        env = {**os.environ, MARKER_ENV: self.cluster_id, **(extra_env or {})}
        env.pop("KUBECONFIG", None)  # components get explicit --kubeconfig flags only
        proc = _detached(self.layout, name, argv, env)
        self.procs[name] = proc
        log.info("started", component=name, pid=proc.pid)
        return proc

    def run(self) -> ClusterState:
        t0 = time.monotonic()
        layout = self.layout
        for d in (layout.root, layout.logs, layout.agent_dir):
            d.mkdir(parents=True, exist_ok=True)
        pki = ClusterPKI(layout.pki)
        pki.create_ca()
        pki.create_service_account_keys()
        serving = pki.apiserver_serving()
        front_proxy = pki.issue("front-proxy-client", "front-proxy-client")
        admin = pki.issue("admin", "kubenas-admin", ("system:masters",))
        fault_token = secrets.token_urlsafe(24)

        with port_lock():
            ports = Ports(*free_ports(6))
            server = f"https://127.0.0.1:{ports.apiserver}"
            write_kubeconfig(layout.kubeconfig, server, pki.ca.cert, admin, "kubenas-admin")
            for component, cn in (
                ("kube-controller-manager", "system:kube-controller-manager"),
                ("kube-scheduler", "system:kube-scheduler"),
                ("node-agent", AGENT_USER),
            ):
                pair = pki.issue(component, cn)
                write_kubeconfig(layout.component_kubeconfig(component), server, pki.ca.cert, pair, cn)

            etcd = self.spawn("etcd", components.etcd_args(self.bins["etcd"], layout, ports))
            wait_for(
                "etcd",
                lambda: http_ok(f"http://127.0.0.1:{ports.etcd_client}/health", expect='"health":"true"'),
                self.opts.timeout,
                etcd,
                layout.log("etcd"),
            )
            apiserver = self.spawn(
                "kube-apiserver",
                components.apiserver_args(self.bins["kube-apiserver"], layout, ports, pki, serving, front_proxy),
            )
            ctx = _https_context(pki, (admin.cert, admin.key))
            wait_for(
                "kube-apiserver",
                lambda: http_ok(f"{server}/readyz", ctx),
                self.opts.timeout,
                apiserver,
                layout.log("kube-apiserver"),
            )
            api = api_client(layout.kubeconfig)
            try:
                self.bootstrap_rbac(api)
                self.start_rest(ports, server, fault_token)
                self.wait_rest(ports, api)
            finally:
                api.close()

        state = ClusterState(
            cluster_id=self.cluster_id,
            cluster_dir=str(layout.root),
            kubeconfig=str(layout.kubeconfig),
            server=server,
            ports=ports.as_dict(),
            pids={name: p.pid for name, p in self.procs.items()},
            fault_url=f"http://127.0.0.1:{ports.agent}",
            fault_token=fault_token,
            nodes=[n.name for n in self.opts.nodes],
            versions=self.manifest.versions,
            started_at=time.time(),
            start_seconds=round(time.monotonic() - t0, 2),
            kubectl=self.manifest.kubectl,
            helm=self.manifest.binaries.get("helm", ""),
        )
        state.save()
        if self.opts.owner_pid:
            watchdog = self.spawn(
                "watchdog",
                [sys.executable, "-m", "kubenas_dev.cluster.watchdog", str(layout.root), str(self.opts.owner_pid)],
            )
            state.pids["watchdog"] = watchdog.pid
            state.save()
        log.info("cluster ready", dir=str(layout.root), server=server, seconds=state.start_seconds)
        return state

    def bootstrap_rbac(self, api: k8s.ApiClient) -> None:
        """The node agent acts as the kubelet of its nodes: bind it to the kubelet's ClusterRole."""
        body = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "kubenas:node-agent"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": AGENT_USER}],
        }
        k8s.RbacAuthorizationV1Api(api).create_cluster_role_binding(body)

    def start_rest(self, ports: Ports, server: str, fault_token: str) -> None:
        layout = self.layout
        self.spawn(
            "kube-controller-manager",
            components.controller_manager_args(
                self.bins["kube-controller-manager"], layout, ports, ClusterPKI(layout.pki)
            ),
        )
        self.spawn("kube-scheduler", components.scheduler_args(self.bins["kube-scheduler"], layout, ports))
        agent_config = {
            "kubeconfig": str(layout.component_kubeconfig("node-agent")),
            "server": server,
            "ca_file": str(ClusterPKI(layout.pki).ca.cert),
            "state_dir": str(layout.agent_dir),
            "fault_port": ports.agent,
            "fault_token": fault_token,
            "nodes": [n.to_dict() for n in self.opts.nodes],
            "kubelet_version": self.manifest.versions["kubernetes"],
            "cluster_id": self.cluster_id,
            "ip_lock_dir": str(build.cache_root() / "run"),
        }
        config_path = layout.agent_dir / "config.json"
        config_path.write_text(json.dumps(agent_config, indent=2))
        self.spawn(
            "node-agent",
            [sys.executable, "-m", "kubenas_dev.cluster.agent", str(config_path)],
            {"PYTHONUNBUFFERED": "1"},
        )

    def wait_rest(self, ports: Ports, api: k8s.ApiClient) -> None:
        layout, timeout = self.layout, self.opts.timeout
        insecure = _https_context(None, None)
        for name, port in (("kube-controller-manager", ports.controller_manager), ("kube-scheduler", ports.scheduler)):
            url = f"https://127.0.0.1:{port}/healthz"
            wait_for(name, lambda u=url: http_ok(u, insecure), timeout, self.procs[name], layout.log(name))
        agent = self.procs["node-agent"]
        wait_for(
            "node-agent",
            lambda: http_ok(f"http://127.0.0.1:{ports.agent}/healthz"),
            timeout,
            agent,
            layout.log("node-agent"),
        )
        core = k8s.CoreV1Api(api)
        names = {n.name for n in self.opts.nodes}
        wait_for("nodes Ready", lambda: _nodes_schedulable(core, names), timeout, agent, layout.log("node-agent"))
        cm = self.procs["kube-controller-manager"]
        cm_log = layout.log("kube-controller-manager")
        wait_for(
            "default ServiceAccount",
            lambda: bool(core.read_namespaced_service_account("default", "default")),
            timeout,
            cm,
            cm_log,
        )
        wait_for(
            "kube-root-ca.crt",
            lambda: bool(core.read_namespaced_config_map("kube-root-ca.crt", "default")),
            timeout,
            cm,
            cm_log,
        )


def _nodes_schedulable(core: k8s.CoreV1Api, names: set[str]) -> bool:
    """All ``names`` Ready and without the not-ready taint the node lifecycle controller sets."""
    ready = set()
    for node in core.list_node().items:
        conds = {c.type: c.status for c in (node.status.conditions or [])}
        taints = {t.key for t in (node.spec.taints or [])}
        if conds.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints:
            ready.add(node.metadata.name)
    return names <= ready

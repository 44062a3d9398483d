"""The operator benchmark's moving parts: a cluster, the CRDs, the operator, a pod watch, one experiment.

See ``kubenas.operator.bench`` for what is measured and why.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubenas.operator import names
from kubenas.operator.bench import ZERO_COST_COMMAND, BenchResult, turnarounds
from kubenas.operator.testing import Kube, OperatorProcess, experiment_manifest, wait_for

log = logging.getLogger("kubenas.bench")


def install_crds(kubeconfig: Path) -> None:
    """Create or update the Kubenas CRDs and wait until the API server serves them."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    from kubenas.api.crd import crds

    with config.new_client_from_config(str(kubeconfig)) as api:
        ext = client.ApiextensionsV1Api(api)
        for crd in crds().values():
            name = crd["metadata"]["name"]
            try:
                ext.create_custom_resource_definition(crd)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                current = ext.read_custom_resource_definition(name)
                crd = {**crd, "metadata": {**crd["metadata"], "resourceVersion": current.metadata.resource_version}}
                ext.replace_custom_resource_definition(name, crd)

            def established(name: str = name) -> bool:
                status = ext.read_custom_resource_definition(name).status
                return any(c.type == "Established" and c.status == "True" for c in (status.conditions or []))

            wait_for(f"CRD {name}", established, timeout=60)


class PodWatch:
    """Timestamps trainer pods as a watch sees them: first sight, and the trainer's termination."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.created: dict[str, float] = {}
        self.terminated: dict[str, float] = {}
        self.started = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="pod watch", daemon=True)

    def __enter__(self) -> PodWatch:
        self._thread.start()
        self.started.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(10)

    def _run(self) -> None:
        from kubernetes import client, config, watch

        with config.new_client_from_config(str(self.kubeconfig)) as api:
            core = client.CoreV1Api(api)
            selector = f"{names.LABEL_COMPONENT}={names.COMPONENT_TRAINER}"
            listing = core.list_namespaced_pod(self.namespace, label_selector=selector)
            w = watch.Watch()
            self.started.set()
            while not self._stop:
                for event in w.stream(
                    core.list_namespaced_pod,
                    self.namespace,
                    label_selector=selector,
                    resource_version=listing.metadata.resource_version,
                    timeout_seconds=5,
                    deserialize=False,
                ):
                    self._observe(event["raw_object"], time.monotonic())
                    if self._stop:
                        w.stop()
                        break

    def _observe(self, pod: dict[str, Any], now: float) -> None:
        uid = pod["metadata"]["uid"]
        self.created.setdefault(uid, now)
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") == names.TRAINER_CONTAINER and "terminated" in (cs.get("state") or {}):
                self.terminated.setdefault(uid, now)


@contextlib.contextmanager
def cluster_kubeconfig(kubeconfig: Path | None, workdir: Path) -> Iterator[Path]:
    """The given cluster, or a development cluster started (and stopped) for the benchmark."""
    if kubeconfig is not None:
        yield kubeconfig
        return
    import os

    from kubenas.devcluster.launcher import Cluster, StartOptions

    cluster = Cluster.start(workdir / "cluster", StartOptions(owner_pid=os.getpid()))
    try:
        yield cluster.kubeconfig
    finally:
        cluster.stop(remove=True)


def run_bench(trials: int, parallel: int, kubeconfig: Path | None) -> BenchResult:
    with tempfile.TemporaryDirectory(prefix="kubenas-bench-") as tmp, cluster_kubeconfig(kubeconfig, Path(tmp)) as kc:
        install_crds(kc)
        namespace = f"bench-{secrets.token_hex(3)}"
        kube = Kube(kc, namespace)
        kube.core.create_namespace({"metadata": {"name": namespace}})
        operator = OperatorProcess(kc, Path(tmp) / "operator.log", namespaces=(namespace,)).start()
        try:
            with PodWatch(kc, namespace) as pods:
                manifest = experiment_manifest(
                    "bench",
                    max_trials=trials,
                    parallel=parallel,
                    command=ZERO_COST_COMMAND,
                    search_space={"cell": {"nodes": 4}},  # 5**6 architectures: never exhausted
                )
                kube.apply_experiment(manifest)
                exp = kube.wait_phase("bench", timeout=120 + trials)
                wait_for("every trainer pod's end", lambda: len(pods.terminated) >= trials, timeout=30)
            if exp["status"]["phase"] != "Succeeded":
                raise RuntimeError(f"the benchmark experiment ended {exp['status']}; see {operator.log_path}")
            writes = operator.metric("kubenas_api_writes_total")
            first, last = min(pods.created.values()), max(pods.terminated.values())
            return BenchResult(
                trials=trials,
                parallel=parallel,
                turnaround_ms=turnarounds(list(pods.terminated.values()), list(pods.created.values()), parallel),
                seconds=last - first,
                writes=writes,
            )
        finally:
            operator.stop()
            with contextlib.suppress(Exception):
                kube.core.delete_namespace(namespace)
            kube.close()

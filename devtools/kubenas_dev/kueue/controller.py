"""Install Kueue into a running development cluster and run its controller as a local process.

The process runs as upstream's ServiceAccount identity (a client certificate for
``system:serviceaccount:kueue-system:kueue-controller-manager`` from the cluster's CA), so the
chart's own RBAC is what authorises it. It carries the cluster's process marker, so ``kubenas
cluster down`` (or the watchdog) stops it with the cluster; :meth:`KueueController.stop` removes the
webhook configurations first, so the rest of a test run never calls a webhook that is gone.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubenas_dev.cluster.errors import ComponentError
from kubenas_dev.cluster.launcher import Cluster, free_ports, http_ok, port_lock, wait_for
from kubenas_dev.cluster.log import get_logger
from kubenas_dev.cluster.pki import ClusterPKI, write_kubeconfig
from kubenas_dev.cluster.state import MARKER_ENV, pid_alive, terminate
from kubenas_dev.kueue import manifests
from kubenas_dev.kueue.build import NAMESPACE, KueueManifest

log = get_logger("kubenas_dev.kueue.controller")

CERT_FILES = ("tls.crt", "tls.key")  # the Secret's keys, and the file names the webhook server reads
WEBHOOK_CONFIGURATIONS = (
    ("MutatingWebhookConfiguration", f"{manifests.RELEASE}-mutating-webhook-configuration"),
    ("ValidatingWebhookConfiguration", f"{manifests.RELEASE}-validating-webhook-configuration"),
)


@dataclass
class KueueState:
    """``<cluster dir>/kueue/state.json``: how a later test run on the same cluster finds the process."""

    pid: int
    ports: dict[str, int]
    version: str

    @staticmethod
    def path(directory: Path) -> Path:
        return directory / "state.json"

    @classmethod
    def load(cls, directory: Path) -> KueueState | None:
        path = cls.path(directory)
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def save(self, directory: Path) -> None:
        self.path(directory).write_text(json.dumps(asdict(self), indent=2))


class KueueController:
    """Kueue installed in ``cluster`` with its controller running (see :meth:`start`)."""

    def __init__(self, cluster: Cluster, state: KueueState, process: subprocess.Popen[bytes] | None = None) -> None:
        self.cluster = cluster
        self.state = state
        self._process = process  # when started here: kept so that it is reaped, and its exit seen at once

    @property
    def directory(self) -> Path:
        return self.cluster.dir / "kueue"

    @property
    def log_path(self) -> Path:
        return self.cluster.dir / "logs" / "kueue.log"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.state.ports['health']}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ready(self) -> bool:
        return pid_alive(self.state.pid) and http_ok(f"{self.health_url}/readyz")

    @classmethod
    def start(cls, cluster: Cluster, build: KueueManifest, timeout: float = 180.0) -> KueueController:
        """Install upstream's objects, start the controller, and return once the API server's webhook
        calls reach it; an already running one (a cluster kept between test runs) is reused."""
        directory = cluster.dir / "kueue"
        directory.mkdir(parents=True, exist_ok=True)
        existing = KueueState.load(directory)
        if existing is not None and existing.version == build.version and pid_alive(existing.pid):
            running = cls(cluster, existing)
            running.wait_ready(timeout)
            return running
        upstream = manifests.load(Path(build.upstream).read_text())
        with port_lock():
            ports = manifests.KueuePorts(*free_ports(3))
            config = manifests.configuration(
                manifests.upstream_configuration(upstream), ports, cls.cert_dir_in(directory)
            )
            config_path = directory / "controller_manager_config.yaml"
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            apply(
                cluster,
                [manifests.namespace(), *manifests.installable(upstream), manifests.webhook_endpoints(ports.webhook)],
            )
            kubeconfig = _controller_kubeconfig(cluster, directory)
            process = _spawn(cluster, build, config_path, kubeconfig)
            state = KueueState(pid=process.pid, ports=asdict(ports), version=build.version)
            state.save(directory)
            controller = cls(cluster, state, process)
            controller.wait_ready(timeout)
        log.info("kueue ready", pid=process.pid, ports=state.ports)
        return controller

    @staticmethod
    def cert_dir_in(directory: Path) -> Path:
        return directory / "serving-certs"

    @property
    def cert_dir(self) -> Path:
        return self.cert_dir_in(self.directory)

    def wait_ready(self, timeout: float) -> None:
        """Ready means: the serving certificate is where the controller reads it, the controller says
        so (certificates made and injected, webhook server up), and a dry-run create of a
        ResourceFlavor passes both of its webhooks through the API server."""
        wait_for("kueue's serving certificate", self._mount_certificate, timeout, self._process, self.log_path)
        wait_for("kueue", self.ready, timeout, self._process, self.log_path)
        wait_for("kueue webhooks via the API server", self._webhooks_answer, timeout, self._process, self.log_path)

    def _mount_certificate(self) -> bool:
        """What the kubelet does for the Deployment's Secret volume: Kueue's certificate rotator writes
        the serving certificate into the Secret and waits for it to appear in its certificate
        directory. Written once it is in the Secret (it is valid for years; tests never see a rotation)."""
        core = k8s.CoreV1Api(self.cluster.api_client())
        data = core.read_namespaced_secret(manifests.WEBHOOK_SECRET, NAMESPACE).data or {}
        if not all(data.get(key) for key in CERT_FILES):
            return False
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        for key in CERT_FILES:
            tmp = self.cert_dir / f".{key}.tmp"
            tmp.write_bytes(base64.b64decode(data[key]))
            tmp.chmod(0o600)
            tmp.replace(self.cert_dir / key)
        return True

    def _webhooks_answer(self) -> bool:
        custom = k8s.CustomObjectsApi(self.cluster.api_client())
        body = {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ResourceFlavor",
            "metadata": {"name": "kubenas-webhook-probe"},
        }
        try:
            custom.create_cluster_custom_object("kueue.x-k8s.io", "v1beta2", "resourceflavors", body, dry_run="All")
        except ApiException as exc:
            log.debug("webhook probe refused", status=exc.status, reason=exc.reason)
            return False
        return True

    def stop(self) -> None:
        """Remove the webhook configurations, then stop the process (Kueue's CRDs and objects stay)."""
        api = self.cluster.api_client()
        admission = k8s.AdmissionregistrationV1Api(api)
        for kind, name in WEBHOOK_CONFIGURATIONS:
            delete = (
                admission.delete_mutating_webhook_configuration
                if kind.startswith("Mutating")
                else admission.delete_validating_webhook_configuration
            )
            try:
                delete(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        if pid_alive(self.state.pid):
            terminate([self.state.pid], grace=10)
        KueueState.path(self.directory).unlink(missing_ok=True)


def apply(cluster: Cluster, objects: list[dict[str, Any]]) -> None:
    """Server-side apply (the CRDs are too large for the last-applied annotation of a client-side apply)."""
    docs = yaml.safe_dump_all(objects, sort_keys=False)
    proc = cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=kubenas-dev", "-f", "-", check=False, input=docs
    )
    if proc.returncode != 0:
        raise ComponentError("kueue", f"installing upstream's manifests failed:\n{proc.stderr[-4000:]}")
    wait_for(
        "Kueue CRDs established",
        lambda: _established(
            cluster, [o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"]
        ),
        60,
    )


def _established(cluster: Cluster, names: list[str]) -> bool:
    apiext = k8s.ApiextensionsV1Api(cluster.api_client())
    for name in names:
        conditions = apiext.read_custom_resource_definition(name).status.conditions or []
        if not any(c.type == "Established" and c.status == "True" for c in conditions):
            return False
    return True


def _controller_kubeconfig(cluster: Cluster, directory: Path) -> Path:
    pki = ClusterPKI(cluster.dir / "pki")
    pki.load_ca()
    pair = pki.issue("kueue-controller-manager", manifests.CONTROLLER_USER)
    return write_kubeconfig(
        directory / "kubeconfig", cluster.state.server, pki.ca.cert, pair, manifests.CONTROLLER_USER
    )


def _spawn(cluster: Cluster, build: KueueManifest, config: Path, kubeconfig: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, MARKER_ENV: cluster.state.cluster_id, "KUBECONFIG": str(kubeconfig)}
    log_path = cluster.dir / "logs" / "kueue.log"
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [build.binary, f"--config={config}", "--zap-log-level=2"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=config.parent,
            start_new_session=True,  # like the cluster's components: it outlives a Ctrl-C of the test run
        )
    log.info("started", component="kueue", pid=process.pid)
    return process

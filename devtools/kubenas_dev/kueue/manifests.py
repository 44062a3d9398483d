"""What is installed for Kueue, as pure functions of upstream's rendered chart.

Upstream's objects are applied as the chart renders them (CRDs, RBAC, the webhook Secret, both
webhook configurations, Services), with three changes, each because the controller runs as a local
process on loopback instead of a Deployment:

* the Deployment is left out (the process replaces it), and so are the visibility APIServices (the
  on-demand visibility server is switched off: it would need a fixed ``/visibility`` directory);
* the webhook Service ``kueue-webhook-service`` loses its pod selector and gets an Endpoints object
  pointing at the process's loopback port. The API server runs with
  ``--enable-aggregator-routing=true``, so it calls a webhook Service at its endpoint address
  rather than its ClusterIP (which nothing routes here); Kubernetes 1.32 resolves through Endpoints;
* the Configuration is the chart's own (its ConfigMap), with the settings a local process needs
  overridden: loopback ports, a private certificate directory, leader election off, and only the
  ``batch/job`` integration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubenas_dev.kueue.build import NAMESPACE, RELEASE

WEBHOOK_SERVICE = f"{RELEASE}-webhook-service"
WEBHOOK_SECRET = f"{RELEASE}-webhook-server-cert"
MANAGER_CONFIG = f"{RELEASE}-manager-config"
SERVICE_ACCOUNT = f"{RELEASE}-controller-manager"
#: the user name the API server gives the controller: its ServiceAccount's, so upstream's RBAC binds it
CONTROLLER_USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
LEFT_OUT = frozenset({"Deployment", "APIService"})
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


@dataclass(frozen=True)
class KueuePorts:
    webhook: int
    health: int
    metrics: int


def load(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}


def installable(upstream: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Upstream's objects to apply, in its order: all but :data:`LEFT_OUT`; the webhook Service selector-less."""
    objects = []
    for obj in upstream:
        if obj["kind"] in LEFT_OUT:
            continue
        if obj["kind"] == "Service" and obj["metadata"]["name"] == WEBHOOK_SERVICE:
            obj = {**obj, "spec": {k: v for k, v in obj["spec"].items() if k != "selector"}}
        objects.append(obj)
    return objects


def webhook_endpoints(port: int, host: str = "127.0.0.1") -> dict[str, Any]:
    """The webhook Service's one endpoint: the controller process. The port is unnamed, as is the Service's."""
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": WEBHOOK_SERVICE, "namespace": NAMESPACE},
        "subsets": [{"addresses": [{"ip": host}], "ports": [{"port": port, "protocol": "TCP"}]}],
    }


def upstream_configuration(upstream: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The Configuration the chart ships in its manager ConfigMap."""
    for obj in upstream:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == MANAGER_CONFIG:
            config: dict[str, Any] = yaml.safe_load(obj["data"]["controller_manager_config.yaml"])
            return config
    raise KeyError(f"ConfigMap {MANAGER_CONFIG} is not in the rendered chart")


def configuration(base: dict[str, Any], ports: KueuePorts, cert_dir: Path) -> dict[str, Any]:
    """``base`` with what one local process on loopback needs (see the module docstring)."""
    return {
        **base,
        "namespace": NAMESPACE,
        "health": {**base.get("health", {}), "healthProbeBindAddress": f"127.0.0.1:{ports.health}"},
        "metrics": {**base.get("metrics", {}), "bindAddress": f"127.0.0.1:{ports.metrics}"},
        "webhook": {"port": ports.webhook, "host": "127.0.0.1", "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {
            "enable": True,
            "webhookServiceName": WEBHOOK_SERVICE,
            "webhookSecretName": WEBHOOK_SECRET,
        },
        "integrations": {**base.get("integrations", {}), "frameworks": ["batch/job"]},
        "featureGates": {**base.get("featureGates", {}), "VisibilityOnDemand": False},
    }

"""What the development cluster installs for Kueue, from a rendered chart of upstream's shape.

The real chart is rendered at build time (``kubenas cluster build``) and installed by the e2e tests;
here the pure selection and rewriting is checked on a small document set of the same shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubenas_dev.kueue import build, manifests

CONFIG = {
    "apiVersion": "config.kueue.x-k8s.io/v1beta2",
    "kind": "Configuration",
    "health": {"healthProbeBindAddress": ":8081"},
    "metrics": {"bindAddress": ":8443"},
    "webhook": {"port": 9443},
    "leaderElection": {"leaderElect": True, "resourceName": "c1f6bfd2.kueue.x-k8s.io"},
    "controller": {"groupKindConcurrency": {"Job.batch": 5}},
    "integrations": {"frameworks": ["batch/job", "pod", "ray.io/rayjob"]},
}


def rendered() -> list[dict[str, Any]]:
    meta = {"namespace": "kueue-system"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "kueue-controller-manager", **meta}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kueue-manager-config", **meta},
            "data": {"controller_manager_config.yaml": yaml.safe_dump(CONFIG)},
        },
        {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "x"}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kueue-webhook-service", **meta},
            "spec": {"ports": [{"port": 443, "targetPort": 9443}], "selector": {"control-plane": "controller-manager"}},
        },
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "kueue-controller-manager", **meta}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1beta2.visibility"}},
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "m"},
        },
    ]


def test_everything_but_the_deployment_and_the_visibility_api_is_installed_in_upstream_order() -> None:
    kept = manifests.installable(rendered())
    assert [o["kind"] for o in kept] == [
        "ServiceAccount",
        "ConfigMap",
        "CustomResourceDefinition",
        "Service",
        "MutatingWebhookConfiguration",
    ]


def test_the_webhook_service_loses_its_selector_and_points_at_the_process() -> None:
    source = rendered()
    service = next(o for o in manifests.installable(source) if o["kind"] == "Service")
    assert "selector" not in service["spec"] and service["spec"]["ports"] == [{"port": 443, "targetPort": 9443}]
    assert "selector" in source[3]["spec"]  # the rendered document itself is left alone
    endpoints = manifests.webhook_endpoints(40123)
    assert endpoints["metadata"] == {"name": "kueue-webhook-service", "namespace": "kueue-system"}
    assert endpoints["subsets"] == [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 40123, "protocol": "TCP"}]}]


def test_the_configuration_is_upstreams_with_loopback_ports_and_the_job_integration_only(tmp_path: Path) -> None:
    base = manifests.upstream_configuration(rendered())
    assert base == CONFIG
    config = manifests.configuration(base, manifests.KueuePorts(webhook=1, health=2, metrics=3), tmp_path)
    assert config["namespace"] == "kueue-system"
    assert config["webhook"] == {"port": 1, "host": "127.0.0.1", "certDir": str(tmp_path)}
    assert config["health"]["healthProbeBindAddress"] == "127.0.0.1:2"
    assert config["metrics"]["bindAddress"] == "127.0.0.1:3"
    assert config["leaderElection"] == {"leaderElect": False}
    assert config["internalCertManagement"]["enable"] is True
    assert config["internalCertManagement"]["webhookServiceName"] == "kueue-webhook-service"
    assert config["integrations"]["frameworks"] == ["batch/job"]
    assert config["featureGates"] == {"VisibilityOnDemand": False}
    assert config["controller"] == CONFIG["controller"]  # upstream's settings otherwise


def test_a_chart_without_the_manager_config_is_an_error() -> None:
    with pytest.raises(KeyError, match="kueue-manager-config"):
        manifests.upstream_configuration([o for o in rendered() if o["kind"] != "ConfigMap"])


def test_the_build_is_cached_apart_from_the_control_plane_per_version(tmp_path: Path) -> None:
    kb = build.KueueBuild("v0.17.0", tmp_path)
    assert kb.home == tmp_path / "kueue-v0.17.0" and kb.binary == kb.home / "bin" / "kueue"
    assert kb.manifest() is None
    for path in (kb.binary, kb.upstream):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert kb.manifest() is None  # files without the manifest: an interrupted build
    build.KueueManifest("v0.17.0", str(kb.binary), str(kb.upstream), 1.0, "now").save(kb.manifest_path)
    loaded = kb.manifest()
    assert loaded is not None and loaded.version == "v0.17.0"
    assert "sigs.k8s.io/kueue/pkg/version.GitVersion=v0.17.0" in build.ldflags("v0.17.0")

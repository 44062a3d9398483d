"""The chart's ServiceMonitor, PodMonitor and PrometheusRule against the Prometheus Operator's own schemas.

``helm lint`` and promtool cannot tell whether the Prometheus Operator accepts these objects: a
misspelt or mistyped field would pass them and be refused (or silently pruned) by the cluster the
chart is installed into. Here the real ``monitoring.coreos.com/v1`` CRDs of a pinned Prometheus
Operator release (``kubenas_dev.monitoring.promoperator``) are installed into the test cluster, the chart
is rendered with all three objects enabled, and they are server-side applied for real, with strict
field validation: the API server must accept them and serve them back unchanged. A ServiceMonitor
with a wrong type, a bad duration or an unknown field must be refused, naming the field, which
proves the schema is enforced rather than merely present. (Server-side apply checks types and
declared fields while building its typed patch, from the same schema, so those two messages are
worded by it; the duration pattern is checked by the schema validation proper.)

The CRDs stay installed afterwards (like the chart's own): nothing else in the test cluster uses them.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubenas.packaging import chart
from kubenas_dev.cluster.launcher import Cluster
from kubenas_dev.cluster.pytest_plugin import KubeApis
from kubenas_dev.monitoring import promoperator
from kubenas_dev.packaging_testing import require

FIELD_MANAGER = "kubenas-e2e"
#: kind -> plural, for the objects the chart renders and the CRDs that define them.
KINDS = {"ServiceMonitor": "servicemonitors", "PodMonitor": "podmonitors", "PrometheusRule": "prometheusrules"}
VALUES: dict[str, Any] = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "podMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    },
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
}


@pytest.fixture(scope="module")
def monitoring_crds(cluster: Cluster) -> list[str]:
    """The pinned CRDs, created or updated, and Established; their names."""
    paths = promoperator.crd_paths()
    assert set(paths) == set(KINDS.values())
    names = [f"{plural}.{promoperator.GROUP}" for plural in KINDS.values()]
    for plural, path in paths.items():
        proc = cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-f", str(path),
            check=False,
        )  # fmt: skip
        assert proc.returncode == 0, (
            f"the Prometheus Operator {promoperator.VERSION} CRD {plural} is refused:\n{proc.stderr}"
        )
    crds = [f"crd/{name}" for name in names]
    ready = cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds, check=False)
    assert ready.returncode == 0, ready.stderr
    return names


@pytest.fixture(scope="module")
def helm() -> Path:
    return require("helm")


def _monitoring_objects(helm: Path, namespace: str) -> list[dict[str, Any]]:
    objs = [o for o in chart.objects(VALUES, namespace=namespace, helm=helm) if o["kind"] in KINDS]
    assert sorted(o["kind"] for o in objs) == sorted(KINDS), "the values no longer enable all three objects"
    return objs


def _apply(cluster: Cluster, objs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """Server-side apply for real; kubectl's default ``--validate=strict`` refuses unknown fields."""
    stream = yaml.safe_dump_all(objs, sort_keys=False)
    return cluster.kubectl(
        "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-", check=False, input=stream
    )


def test_the_charts_monitoring_objects_are_valid_prometheus_operator_objects(
    cluster: Cluster, namespace: str, k8s: KubeApis, helm: Path, monitoring_crds: list[str]
) -> None:
    objs = _monitoring_objects(helm, namespace)
    proc = _apply(cluster, objs)
    assert proc.returncode == 0, f"refused by the Prometheus Operator {promoperator.VERSION} schemas:\n{proc.stderr}"
    assert proc.stdout.count("serverside-applied") == len(objs), proc.stdout

    for obj in objs:
        kind, name = obj["kind"], obj["metadata"]["name"]
        assert obj["metadata"].get("namespace", namespace) == namespace
        stored = k8s.custom.get_namespaced_custom_object(
            promoperator.GROUP, "v1", namespace, KINDS[kind], name
        )  # fmt: skip
        assert stored["metadata"]["labels"] == obj["metadata"]["labels"]
        # Nothing pruned, defaulted away or coerced: what the chart renders is what the operator reads.
        assert stored["spec"] == obj["spec"], f"{kind} {name}: the API server changed its spec"


def _service_monitor(helm: Path, namespace: str) -> dict[str, Any]:
    return next(o for o in _monitoring_objects(helm, namespace) if o["kind"] == "ServiceMonitor")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("honorLabels", "yes", "spec.endpoints[0].honorLabels: expected boolean"),
        ("interval", "30 seconds", 'spec.endpoints[0].interval: Invalid value: "30 seconds"'),
        ("honourLabels", True, "spec.endpoints[0].honourLabels: field not declared in schema"),
    ],
    ids=["wrong-type", "bad-duration", "unknown-field"],
)
def test_the_schema_refuses_a_broken_service_monitor(
    cluster: Cluster, namespace: str, helm: Path, monitoring_crds: list[str], field: str, value: Any, message: str
) -> None:
    broken = copy.deepcopy(_service_monitor(helm, namespace))
    broken["metadata"]["name"] = "broken"
    broken["spec"]["endpoints"][0][field] = value
    proc = _apply(cluster, [broken])
    assert proc.returncode != 0, f"accepted a ServiceMonitor with {field}={value!r}:\n{proc.stdout}"
    assert message in proc.stderr, proc.stderr

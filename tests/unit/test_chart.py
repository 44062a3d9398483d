"""The Helm chart: lint, schema, least-privilege RBAC, a restricted Deployment, the generated parts
(CRDs, dashboard, bundle) and the monitoring objects, all from ``helm template`` output."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from kubenas.api import crd
from kubenas.operator import cli as operator_cli
from kubenas.operator.kube import RESOURCES
from kubenas.packaging import bundle, chart, crds, dashboard, generate
from kubenas.packaging.helm import HelmError, run_helm
from kubenas.packaging.paths import NAMESPACE, Layout
from kubenas_dev.packaging_testing import require
from tests.conftest import REPO

CHART = REPO / "charts" / "kubenas"


@pytest.fixture(scope="module")
def helm() -> Path:
    return require("helm")


def _render(helm: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return chart.objects(values, helm=helm)


def _kinds(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objs)


def _one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


ALL_OPTIONS: dict[str, Any] = {
    "watchNamespaces": ["team-a", "team-b"],
    "replicas": 2,
    "leaderElection": {"enabled": True, "leaseName": "kubenas-leader", "leaseDuration": 20},
    "logLevel": "debug",
    "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    "priorityClassName": "system-cluster-critical",
}


# -- lint and schema -----------------------------------------------------------------------------
@pytest.mark.parametrize("values", [None, ALL_OPTIONS], ids=["defaults", "every-option"])
def test_helm_lint_strict_passes(helm: Path, values: dict[str, Any] | None) -> None:
    out = chart.lint(values, helm=helm)
    assert "0 chart(s) failed" in out


def test_schema_rejects_unknown_keys_with_their_path(helm: Path) -> None:
    with pytest.raises(HelmError, match="'metricsPort' not allowed"):
        chart.lint({"metricsPort": 9090}, helm=helm)
    with pytest.raises(HelmError, match=r"/metrics/serviceMonitor.*'enable' not allowed"):
        chart.lint({"metrics": {"serviceMonitor": {"enable": True}}}, helm=helm)


def test_schema_rejects_bad_values(helm: Path) -> None:
    with pytest.raises(HelmError, match="logLevel"):
        chart.lint({"logLevel": "loud"}, helm=helm)
    with pytest.raises(HelmError, match="watchNamespaces"):
        chart.lint({"watchNamespaces": ["Not_A_Namespace"]}, helm=helm)


def test_leader_election_timings_must_be_safe(helm: Path) -> None:
    with pytest.raises(HelmError, match="leaseDuration must be longer"):
        chart.objects({"replicas": 2, "leaderElection": {"leaseDuration": 10, "renewDeadline": 10}}, helm=helm)
    with pytest.raises(HelmError, match=r"1\.2 times"):
        chart.objects({"leaderElection": {"enabled": True, "retryPeriod": 9}}, helm=helm)
    with pytest.raises(HelmError, match="'peering' not allowed"):
        chart.lint({"peering": {"enabled": True}}, helm=helm)


def test_every_schema_object_forbids_unknown_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_ones: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
            open_ones.append(path or "/")
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}/{key}")

    walk(schema, "")
    assert open_ones == []


def test_chart_packages(helm: Path, tmp_path: Path) -> None:
    out = run_helm(["package", str(CHART), "--destination", str(tmp_path)], helm=helm)
    assert len(list(tmp_path.glob("kubenas-*.tgz"))) == 1, out


def test_chart_version_follows_the_package() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    package = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert meta["version"] == package
    assert meta["appVersion"] == package


# -- generated parts and drift -------------------------------------------------------------------
def test_chart_crds_are_the_models_crds() -> None:
    for name, text in crds.chart_crds().items():
        path = CHART / "crds" / name
        assert path.exists(), f"{path} is missing: run `kubenas chart generate`"
        assert path.read_text() == text, f"{path} drifted: run `kubenas chart generate`"
    for name in crd.crds():
        chart_obj = yaml.safe_load((CHART / "crds" / name).read_text())
        assert chart_obj == yaml.safe_load((REPO / "crds" / name).read_text()), f"{name} differs from crds/"
    assert {p.name for p in (CHART / "crds").glob("*.yaml")} == set(crds.chart_crds())


def test_dashboard_json_is_generated() -> None:
    assert (CHART / "files" / "dashboards" / "kubenas.json").read_text() == dashboard.render(), (
        "the dashboard drifted from operator/kubenas/packaging/dashboard.py: run `kubenas chart generate`"
    )


def test_bundle_is_the_chart_rendered(helm: Path) -> None:
    path = REPO / "deploy" / "kubenas.yaml"
    assert path.read_text() == bundle.render(helm=helm), "deploy/kubenas.yaml drifted: run `kubenas chart generate`"


def test_bundle_is_self_contained() -> None:
    text = (REPO / "deploy" / "kubenas.yaml").read_text()
    assert text.startswith("# Kubenas, all in one file")
    objs = [o for o in yaml.safe_load_all(text) if o]
    assert objs[0] == {**objs[0], "kind": "Namespace"} and objs[0]["metadata"]["name"] == NAMESPACE
    kinds = _kinds(objs)
    assert kinds.count("CustomResourceDefinition") == 2
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ConfigMap"):
        assert kind in kinds
    namespaced = [o for o in objs if o["kind"] in ("ServiceAccount", "Deployment", "Service", "ConfigMap")]
    assert all(o["metadata"]["namespace"] == NAMESPACE for o in namespaced)
    assert "managed-by: Helm" not in text


def test_generate_writes_a_fresh_checkout(helm: Path, tmp_path: Path) -> None:
    """``kubenas chart generate`` recreates every generated file from the sources alone."""
    layout = Layout(tmp_path)
    for rel in ("Chart.yaml", "values.yaml", "values.schema.json", ".helmignore", "templates", "files/alerts.yaml"):
        src, dst = CHART / rel, layout.chart / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            dst.mkdir()
            for f in src.iterdir():
                (dst / f.name).write_text(f.read_text())
        else:
            dst.write_text(src.read_text())
    written = generate.write(layout, helm=helm)
    assert layout.bundle in written and layout.dashboard in written
    assert generate.drifted(layout, helm=helm) == []
    assert layout.bundle.read_text() == (REPO / "deploy" / "kubenas.yaml").read_text()


# -- RBAC ----------------------------------------------------------------------------------------
def _rules(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        r for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name) for r in o["rules"]
    ]


def _allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


def test_rbac_has_no_wildcards_and_never_lists_secrets(helm: Path) -> None:
    for values in (None, ALL_OPTIONS):
        objs = _render(helm, values)
        for kind in ("ClusterRole", "Role"):
            for rule in _rules(objs, kind):
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[key], f"{kind} rule {rule} has a wildcard"
                if "secrets" in rule["resources"]:
                    assert set(rule["verbs"]) <= {"get", "create", "patch"}


def test_rbac_covers_every_resource_the_operator_touches(helm: Path) -> None:
    objs = _render(helm, {"replicas": 2})
    rules = _rules(objs, "ClusterRole", "kubenas") + _rules(objs, "Role", "kubenas-leader-election")
    for (api_version, _kind), plural in RESOURCES.items():
        group = api_version.split("/")[0] if "/" in api_version else ""
        assert any(group in r["apiGroups"] and plural in r["resources"] for r in rules), f"no rule for {plural}"
    for sub in ("searchexperiments/status", "trials/status"):
        assert _allows(rules, "kubenas.io", sub, "patch")
    assert _allows(rules, "", "events", "create")
    for owner in ("searchexperiments/finalizers", "trials/finalizers"):
        assert _allows(rules, "kubenas.io", owner, "update")


def test_cluster_wide_is_the_default(helm: Path) -> None:
    objs = _render(helm)
    assert "Role" not in _kinds(objs) and "RoleBinding" not in _kinds(objs)
    args = _one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args and not [a for a in args if a.startswith("--namespace")]
    discovery = _rules(objs, "ClusterRole", "kubenas-discovery")
    assert _allows(discovery, "apiextensions.k8s.io", "customresourcedefinitions", "watch")
    assert not any("secrets" in r["resources"] for r in discovery)


def test_watch_namespaces_confine_every_write_to_them(helm: Path) -> None:
    objs = _render(helm, {"watchNamespaces": ["team-a", "team-b"]})
    roles = [o for o in objs if o["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = [o for o in objs if o["kind"] == "RoleBinding"]
    assert all(b["subjects"][0]["namespace"] == NAMESPACE for b in bindings)
    # The only cluster-wide rules left are read-only discovery.
    for rule in _rules(objs, "ClusterRole"):
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
    args = _one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args


def test_leader_election_follows_the_replicas(helm: Path) -> None:
    """More than one replica elects a leader through a Lease in the release namespace; the Role may
    create Leases and get and update only its own, nothing else and nowhere else."""
    for values in ({"replicas": 2}, {"watchNamespaces": ["a", "b"], "leaderElection": {"enabled": True}}):
        objs = _render(helm, values)
        (role,) = [o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == "kubenas-leader-election"]
        assert role["metadata"]["namespace"] == NAMESPACE
        assert role["rules"] == [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": ["kubenas"],
                "verbs": ["get", "update"],
            },
        ]
        binding = next(
            o for o in objs if o["kind"] == "RoleBinding" and o["metadata"]["name"] == role["metadata"]["name"]
        )
        assert binding["metadata"]["namespace"] == NAMESPACE and binding["roleRef"]["name"] == role["metadata"]["name"]
        dep = _one(objs, "Deployment")
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--leader-election" in args and "--leader-election-name=kubenas" in args
        assert "--leader-election-namespace=$(POD_NAMESPACE)" in args
        assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
        assert not any("kopf.dev" in r["apiGroups"] for k in ("ClusterRole", "Role") for r in _rules(objs, k))
    assert _one(_render(helm, {"replicas": 2}), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    single = _render(helm)
    assert "PodDisruptionBudget" not in _kinds(single) and "Role" not in _kinds(single)
    assert not [
        a for a in _one(single, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"] if "leader" in a
    ]
    named = _render(helm, ALL_OPTIONS)
    assert "--leader-election-name=kubenas-leader" in _flags_and_values(named)
    assert "--leader-election-lease-duration=20" in _flags_and_values(named)


def _flags_and_values(objs: list[dict[str, Any]]) -> list[str]:
    return list(_one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])


# -- the Deployment ------------------------------------------------------------------------------
def test_deployment_is_restricted_probed_and_bounded(helm: Path) -> None:
    dep = _one(_render(helm), "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["port"] == "http-health"
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["command"] == ["kubenas", "operator"]
    assert {p["name"] for p in container["ports"]} == {"http-metrics", "http-health"}
    assert pod["serviceAccountName"] == "kubenas"
    assert dep["spec"]["strategy"] == {"type": "Recreate"}


def _operator_options() -> set[str]:
    """Every option ``kubenas operator`` accepts."""
    command = typer.main.get_command(operator_cli.app)
    return {opt for param in command.params for opt in param.opts if opt.startswith("-")}


def _flags(objs: list[dict[str, Any]]) -> set[str]:
    container = _one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {a.split("=", 1)[0] for a in container["args"] if a.startswith("-")}


@pytest.mark.parametrize(
    "values",
    [
        None,
        {"watchNamespaces": ["a"], "logLevel": "debug", "logFormat": "plain"},
        {"replicas": 2, "logLevel": "verbose"},
    ],
    ids=["defaults", "namespaced-debug", "leader-election"],
)
def test_deployment_passes_only_flags_the_operator_has(helm: Path, values: dict[str, Any] | None) -> None:
    assert _flags(_render(helm, values)) <= _operator_options()


def test_endpoints_listen_on_the_pod_ip(helm: Path) -> None:
    container = _one(_render(helm), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-address=$(POD_IP)" in container["args"]
    assert "--liveness=http://$(POD_IP):8080/healthz" in container["args"]
    for name, path in (
        ("POD_IP", "status.podIP"),
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ):
        assert {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}} in container["env"]


def test_release_name_and_overrides_name_everything(helm: Path) -> None:
    objs = chart.objects({"fullnameOverride": "nas"}, release="prod", namespace="ops", helm=helm)
    dep = _one(objs, "Deployment")
    assert dep["metadata"]["name"] == "nas" and dep["metadata"]["namespace"] == "ops"
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "nas"
    binding = next(o for o in objs if o["kind"] == "ClusterRoleBinding" and o["metadata"]["name"] == "nas")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "nas", "namespace": "ops"}]


# -- monitoring objects --------------------------------------------------------------------------
def test_monitoring_objects_are_gated_by_values(helm: Path) -> None:
    default = _kinds(_render(helm))
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert kind not in default
    assert "ConfigMap" in default and "Service" in default
    objs = _render(helm, ALL_OPTIONS)
    for kind in ("ServiceMonitor", "PodMonitor"):
        monitor = _one(objs, kind)
        (endpoint,) = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] == "http-metrics"
        assert endpoint["honorLabels"] is True, "the series' namespace label must not become exported_namespace"
        assert {"action": "replace", "targetLabel": "job", "replacement": "kubenas-operator"} in endpoint["relabelings"]
    assert "ConfigMap" not in _kinds(_render(helm, {"dashboard": {"enabled": False}}))


def test_service_monitor_needs_the_metrics_service(helm: Path) -> None:
    with pytest.raises(HelmError, match=r"metrics\.service\.enabled"):
        chart.objects({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}, helm=helm)


def test_prometheus_rule_is_the_alerts_file(helm: Path) -> None:
    rule = _one(_render(helm, ALL_OPTIONS), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())


def test_dashboard_config_map_is_labelled_for_grafana(helm: Path) -> None:
    cm = _one(_render(helm), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["kubenas.json"]) == dashboard.build()


def test_metrics_service_selects_the_operator_pods(helm: Path) -> None:
    objs = _render(helm)
    svc = _one(objs, "Service")
    labels = _one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"]["ports"][0]["targetPort"] == "http-metrics"

"""The dashboard and the alert rules: valid PromQL, only metrics the operator exports, the panels
the issue asks for, and alerts that fire (``promtool test rules`` on synthetic series)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubenas.operator.metrics import OperatorMetrics
from kubenas.packaging import dashboard
from kubenas_dev.monitoring import prometheus, promql
from kubenas_dev.packaging_testing import require
from tests.conftest import REPO

ALERTS = REPO / "charts" / "kubenas" / "files" / "alerts.yaml"


@pytest.fixture(scope="module")
def promtool() -> Path:
    return require("promtool")


def _promtool(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], capture_output=True, text=True, timeout=120)


def exported_names() -> set[str]:
    """Every series name the operator's registry can expose, with counter and histogram suffixes."""
    names = {"up"}  # added by Prometheus to every target
    for family in OperatorMetrics().registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


def test_alert_rules_pass_promtool(promtool: Path) -> None:
    proc = _promtool(promtool, "check", "rules", str(ALERTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_dashboard_query_is_valid_promql(promtool: Path, tmp_path: Path) -> None:
    """promtool has no offline query parser, but it parses recording rules: one per query."""
    exprs = promql.dashboard_expressions()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"kubenas:panel_{i}", "expr": e.expr} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard-as-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    proc = _promtool(promtool, "check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(exprs)} rules found" in proc.stdout


def test_every_metric_in_the_dashboard_and_rules_is_exported() -> None:
    used = promql.names_used(promql.all_expressions())
    missing = {name: sorted(origins) for name, origins in used.items() if name not in exported_names()}
    assert missing == {}, "used but not in operator/kubenas/operator/metrics.py"


def test_metric_name_extraction_ignores_labels_functions_and_durations() -> None:
    expr = 'histogram_quantile(0.9, sum by (le, phase) (rate(a_seconds_bucket{phase="x"}[5m]))) > 1e3 or vector(0)'
    assert promql.metric_names(expr) == {"a_seconds_bucket"}
    assert promql.substitute('rate(x[$__rate_interval]) and y{n=~"${namespace}"}') == 'rate(x[1m]) and y{n=~".*"}'


def test_dashboard_shows_what_operators_need() -> None:
    used = promql.names_used(promql.dashboard_expressions())
    for needed in (
        "kubenas_experiments",  # experiments
        "kubenas_trials",  # trials by phase, failures
        "kubenas_experiment_best_reward",  # best reward over time
        "kubenas_trial_turnaround_seconds_bucket",  # turnaround
        "kubenas_gpu_seconds_total",  # GPU-seconds
        "kubenas_reconcile_errors_total",  # operator health
        "kubenas_reconcile_duration_seconds_bucket",
        "up",
    ):
        assert needed in used, f"no panel uses {needed}"
    titles = {p.title for row in dashboard.ROWS for p in row.panels}
    assert {"Trials by phase", "Best reward over time", "Trial turnaround", "Failures", "GPU-seconds"} <= titles


def test_dashboard_layout_is_well_formed() -> None:
    model = json.loads((REPO / "charts" / "kubenas" / "files" / "dashboards" / "kubenas.json").read_text())
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in model["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        for target in p.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    variables = {v["name"] for v in model["templating"]["list"]}
    assert variables == {"datasource", "namespace", "experiment"}
    assert model["uid"] == dashboard.UID


def test_alerts_are_documented() -> None:
    doc = (REPO / "docs" / "monitoring.md").read_text()
    for group in promql.rule_groups():
        for rule in group["rules"]:
            assert rule["alert"] in doc, f"{rule['alert']} is not explained in docs/monitoring.md"
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert {"summary", "description"} <= set(rule["annotations"])


def _fires(alert: str, at: str, value: str, severity: str, **labels: str) -> dict[str, Any]:
    """A promtool expectation: ``alert`` fires at ``at`` with these labels, rendered annotations included."""
    rule = next(r for g in promql.rule_groups() for r in g["rules"] if r["alert"] == alert)
    annotations = {}
    for key, text in rule["annotations"].items():
        text = re.sub(r"\{\{[^}]*\$value[^}]*\}\}", value, text)
        annotations[key] = re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], text)
    expected = {"exp_labels": {"severity": severity, **labels}, "exp_annotations": annotations}
    return {"eval_time": at, "alertname": alert, "exp_alerts": [expected]}


def _quiet(alert: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


def _case(series: list[tuple[str, dict[str, str], str]], *checks: dict[str, Any]) -> dict[str, Any]:
    """One promtool test: series given as (name, labels, values), one sample a minute."""
    inputs = [
        {"series": name + "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}", "values": values}
        for name, labels, values in series
    ]
    return {"interval": "1m", "input_series": inputs, "alert_rule_test": list(checks)}


TRIALS = {"namespace": "ns", "experiment": "e"}
ALERT_CASES: list[dict[str, Any]] = [
    _case(
        [("kubenas_experiments", {"phase": "Failed"}, "0 0 1 1")],
        _quiet("KubenasExperimentFailed", "1m"),
        _fires("KubenasExperimentFailed", "2m", "1", "warning"),
    ),
    _case(
        [("up", {"job": "kubenas-operator", "instance": "a"}, "1 1 0x10")],
        _quiet("KubenasOperatorDown", "4m"),
        _fires("KubenasOperatorDown", "8m", "1", "critical"),
    ),
    _case(
        [
            ("kubenas_trials", {**TRIALS, "phase": "Failed"}, "0 1 3 5x20"),
            ("kubenas_trials", {**TRIALS, "phase": "Succeeded"}, "1 1 1 1x20"),
            ("kubenas_trials", {**TRIALS, "phase": "Infeasible"}, "0x23"),
        ],
        _quiet("KubenasTrialFailureRatioHigh", "3m"),
        _fires("KubenasTrialFailureRatioHigh", "15m", "83.33%", "warning", **TRIALS),
    ),
    _case(
        [
            ("kubenas_api_requests_total", {"verb": "create", "resource": "secrets", "code": "403"}, "0+2x20"),
            ("kubenas_api_requests_total", {"verb": "create", "resource": "jobs", "code": "201"}, "0+5x20"),
        ],
        _fires("KubenasOperatorForbidden", "12m", "", "critical", verb="create", resource="secrets"),
    ),
    _case(
        [("kubenas_reconcile_errors_total", TRIALS, "0+6x30")],
        _quiet("KubenasReconcileErrors", "10m"),
        _fires("KubenasReconcileErrors", "25m", "0.10", "warning", **TRIALS),
    ),
]


def test_alerts_fire_on_synthetic_series(promtool: Path, tmp_path: Path) -> None:
    spec = {"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": ALERT_CASES}
    path = tmp_path / "alerts_test.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = _promtool(promtool, "test", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_documented_scrape_config_is_the_generated_one() -> None:
    doc = (REPO / "docs" / "monitoring.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    (block,) = [b for b in blocks if "job_name: kubenas-operator" in b]
    assert yaml.safe_load(block)["scrape_configs"] == [prometheus.scrape_config()]


def test_endpoint_targets_keep_ready_endpoints_on_the_metrics_port() -> None:
    piece = {
        "metadata": {"namespace": "ops"},
        "ports": [{"name": "http-metrics", "port": 9090}],
        "endpoints": [
            {"addresses": ["127.0.0.5"], "conditions": {"ready": True}, "targetRef": {"name": "op-1"}},
            {"addresses": ["127.0.0.6"], "conditions": {"ready": False}, "targetRef": {"name": "op-2"}},
        ],
    }
    other = {**piece, "ports": [{"name": "http", "port": 80}]}
    assert prometheus.endpoint_targets([piece, other]) == [
        {"targets": ["127.0.0.5:9090"], "labels": {"kubernetes_namespace": "ops", "pod": "op-1"}}
    ]
    job = prometheus.file_sd_config(Path("/t.json"), interval="1s")
    assert job["honor_labels"] is True and job["job_name"] == "kubenas-operator"


def test_every_operator_metric_is_documented() -> None:
    doc = (REPO / "docs" / "monitoring.md").read_text()
    families = [f.name + ("_total" if f.type == "counter" else "") for f in OperatorMetrics().registry.collect()]
    assert [name for name in families if f"`{name}`" not in doc] == []

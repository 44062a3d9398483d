"""The Grafana dashboard, built from a short list of panels instead of edited as 1,000 lines of JSON.

Every query is here, in one place, so the tests can read them back: a unit test checks each metric
name against the operator's registry (operator/kubenas/operator/metrics.py), and the monitoring
end-to-end test runs each query against a real Prometheus after an experiment and expects data.
``kubenas chart generate`` writes the JSON to charts/kubenas/files/dashboards/kubenas.json, which
the chart ships in a ConfigMap for Grafana's dashboard sidecar.

Queries select the operator's series by ``job="kubenas-operator"`` (set by the chart's
ServiceMonitor and PodMonitor) and filter experiments with the ``$namespace`` and ``$experiment``
variables. Sums of error-like series end in ``or vector(0)`` so a healthy system shows 0, not
"No data".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kubenas.packaging.paths import METRICS_JOB

UID = "kubenas-overview"
TITLE = "Kubenas"
GRID_WIDTH = 24

SEL = 'namespace=~"$namespace", experiment=~"$experiment"'
"""The experiment filter every per-experiment query carries."""

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """One panel: a stat (a single number) or a time series, ``width`` of 24 columns wide."""

    title: str
    description: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    stacked: bool = False
    decimals: int | None = None


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def _q(expr: str, legend: str = "") -> Query:
    return Query(expr=expr, legend=legend)


def _stat(title: str, description: str, expr: str, decimals: int | None = None) -> Panel:
    """A single-number panel of the overview row."""
    return Panel(title, description, (_q(expr),), kind="stat", width=4, height=4, decimals=decimals)


def _quantiles(metric: str, by: str = "") -> tuple[Query, ...]:
    group = f"{by}, le" if by else "le"
    return tuple(
        _q(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{SEL}}}[$__rate_interval])))",
            f"p{round(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    )


ROWS: tuple[Row, ...] = (
    Row(
        "Overview",
        (
            _stat(
                "Operator replicas up",
                "Operator targets Prometheus scrapes successfully. 0 means no experiment makes progress.",
                f'sum(up{{job="{METRICS_JOB}"}}) or vector(0)',
            ),
            _stat(
                "Running experiments",
                "SearchExperiments in phase Running.",
                'sum(kubenas_experiments{phase="Running"}) or vector(0)',
            ),
            _stat(
                "Failed experiments",
                "SearchExperiments in phase Failed (alert KubenasExperimentFailed).",
                'sum(kubenas_experiments{phase="Failed"}) or vector(0)',
            ),
            _stat(
                "Running trials",
                "Trials whose trainer Job is running, in the selected experiments.",
                f'sum(kubenas_trials{{phase="Running", {SEL}}}) or vector(0)',
            ),
            _stat(
                "Finished trials",
                "Trials that succeeded, failed or were infeasible, in the selected experiments.",
                f'sum(kubenas_trials{{phase=~"Succeeded|Failed|Infeasible|Pruned", {SEL}}}) or vector(0)',
            ),
            _stat(
                "GPU-hours",
                "GPU time held by finished trainer pods, in the selected experiments.",
                f"sum(kubenas_gpu_seconds_total{{{SEL}}}) / 3600 or vector(0)",
                decimals=2,
            ),
        ),
    ),
    Row(
        "Experiments",
        (
            Panel(
                "Experiments by phase",
                "Every SearchExperiment the operator knows, by phase.",
                (_q("sum by (phase) (kubenas_experiments)", "{{phase}}"),),
                stacked=True,
            ),
            Panel(
                "Best reward over time",
                "Objective value of the best trial so far, per experiment.",
                (
                    _q(
                        f"max by (namespace, experiment) (kubenas_experiment_best_reward{{{SEL}}})",
                        "{{namespace}}/{{experiment}}",
                    ),
                ),
            ),
        ),
    ),
    Row(
        "Trials",
        (
            Panel(
                "Trials by phase",
                "Trials of the selected experiments, by phase.",
                (_q(f"sum by (phase) (kubenas_trials{{{SEL}}})", "{{phase}}"),),
                stacked=True,
            ),
            Panel(
                "Failures",
                "Failed trials per experiment and failed experiments.",
                (
                    _q(
                        f'sum by (namespace, experiment) (kubenas_trials{{phase="Failed", {SEL}}})',
                        "failed trials {{namespace}}/{{experiment}}",
                    ),
                    _q('sum(kubenas_experiments{phase="Failed"}) or vector(0)', "failed experiments"),
                ),
            ),
            Panel(
                "Trial turnaround",
                "From a trainer pod ending to the next trial's Job being created: how quickly the "
                "operator turns a result into new work.",
                _quantiles("kubenas_trial_turnaround_seconds"),
                unit="s",
            ),
            Panel(
                "Trial duration",
                "Wall time of finished trials, from the first pod start to the end.",
                _quantiles("kubenas_trial_duration_seconds"),
                unit="s",
            ),
            Panel(
                "GPU-seconds",
                "GPU-seconds held by finished trainer pods, cumulative per experiment.",
                (
                    _q(
                        f"sum by (namespace, experiment) (kubenas_gpu_seconds_total{{{SEL}}})",
                        "{{namespace}}/{{experiment}}",
                    ),
                ),
                unit="s",
                width=24,
            ),
        ),
    ),
    Row(
        "Operator health",
        (
            Panel(
                "Reconcile passes and errors",
                "Reconcile passes per second and those that failed and were retried.",
                (
                    _q(f"sum(rate(kubenas_reconciles_total{{{SEL}}}[$__rate_interval])) or vector(0)", "passes"),
                    _q(f"sum(rate(kubenas_reconcile_errors_total{{{SEL}}}[$__rate_interval])) or vector(0)", "errors"),
                ),
                unit="ops",
            ),
            Panel(
                "Reconcile duration",
                "Time of one reconcile pass.",
                _quantiles("kubenas_reconcile_duration_seconds"),
                unit="s",
            ),
            Panel(
                "API requests by code",
                "Kubernetes API requests of the operator per second, by HTTP code; 403 means its RBAC is "
                "short of what it needs (alert KubenasOperatorForbidden).",
                (_q("sum by (code) (rate(kubenas_api_requests_total[$__rate_interval]))", "{{code}}"),),
                unit="reqps",
            ),
            Panel(
                "Leader election",
                "Operator replicas that lead (exactly 1 is healthy: 0 means nothing reconciles until a standby "
                "takes the Lease) and replicas scraped; standbys keep warm caches.",
                (
                    _q("sum(kubenas_operator_leader) or vector(0)", "leading"),
                    _q("count(kubenas_operator_leader) or vector(0)", "replicas"),
                ),
            ),
            Panel(
                "API and controller latency (p95)",
                "95th percentile latency of the operator's Kubernetes API requests by verb, and of its calls to "
                "experiment controllers by endpoint.",
                (
                    _q(
                        "histogram_quantile(0.95, sum by (verb, le) "
                        "(rate(kubenas_api_request_duration_seconds_bucket[$__rate_interval])))",
                        "API {{verb}}",
                    ),
                    _q(
                        "histogram_quantile(0.95, sum by (endpoint, le) "
                        "(rate(kubenas_controller_call_duration_seconds_bucket[$__rate_interval])))",
                        "controller {{endpoint}}",
                    ),
                ),
                unit="s",
                width=24,
            ),
            Panel(
                "API writes and controller replays",
                "Creates, patches and deletes per second, and histories replayed into restarted controllers.",
                (
                    _q("sum(rate(kubenas_api_writes_total[$__rate_interval])) or vector(0)", "writes"),
                    _q(
                        f"sum(rate(kubenas_controller_replays_total{{{SEL}}}[$__rate_interval])) or vector(0)",
                        "replays",
                    ),
                ),
                unit="ops",
            ),
        ),
    ),
)


def queries() -> list[tuple[str, Query]]:
    """(panel title, query) for every query of the dashboard, in order."""
    return [(p.title, q) for row in ROWS for p in row.panels for q in p.queries]


def _panel_json(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.decimals is not None:
        defaults["decimals"] = panel.decimals
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if panel.stacked else 0,
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
            "showPoints": "never",
        }
        options: dict[str, Any] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        defaults["color"] = {"mode": "thresholds"}
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None}]}
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    return {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {
                "datasource": DATASOURCE,
                "refId": chr(ord("A") + i),
                "expr": q.expr,
                "legendFormat": q.legend or "__auto",
                "range": True,
            }
            for i, q in enumerate(panel.queries)
        ],
    }


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row in ROWS:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y, x, row_height = pid + 1, y + 1, 0, 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, row_height = 0, y + row_height, 0
            panels.append(_panel_json(panel, pid, x, y))
            pid, x, row_height = pid + 1, x + panel.width, max(row_height, panel.height)
        y += row_height
    return {
        "uid": UID,
        "title": TITLE,
        "description": (
            "Kubenas experiments, trials and operator health. Generated by `kubenas chart generate` from "
            "operator/kubenas/packaging/dashboard.py; edit that file, not this JSON."
        ),
        "tags": ["kubenas", "kubernetes", "nas"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                },
                _variable("namespace", "Namespace", "label_values(kubenas_trials, namespace)"),
                _variable(
                    "experiment", "Experiment", 'label_values(kubenas_trials{namespace=~"$namespace"}, experiment)'
                ),
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"

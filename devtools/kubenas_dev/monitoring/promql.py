"""Every PromQL expression the chart ships, and the metric names they use.

The dashboard and the alert rules are only worth shipping if each expression works against the
operator's real series. This module lists them (with Grafana's variables replaced by values
Prometheus accepts) for the monitoring end-to-end test, and extracts the metric names for the unit
test that checks them against the operator's registry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from kubenas.packaging import dashboard
from kubenas.packaging.paths import Layout

#: Values for Grafana's variables when a query is sent to Prometheus directly.
GRAFANA_DEFAULTS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$namespace": ".*",
    "$experiment": ".*",
}


@dataclass(frozen=True)
class Expression:
    """One PromQL expression and where it comes from (``dashboard: <panel>`` or ``rule: <alert>``)."""

    origin: str
    expr: str
    legend: str = ""


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace Grafana's ``$variables`` (longest first, so ``$__rate_interval`` beats ``$__r...``)."""
    out = expr
    for name, value in sorted((values or GRAFANA_DEFAULTS).items(), key=lambda kv: -len(kv[0])):
        out = out.replace("${" + name[1:] + "}", value).replace(name, value)
    return out


def dashboard_expressions(values: dict[str, str] | None = None) -> list[Expression]:
    return [Expression(f"dashboard: {title}", substitute(q.expr, values), q.legend) for title, q in dashboard.queries()]


def rule_groups(path: Path | None = None) -> list[dict]:
    path = path or Layout().alerts
    return list(yaml.safe_load(path.read_text())["groups"])


def rule_expressions(path: Path | None = None) -> list[Expression]:
    out = []
    for group in rule_groups(path):
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            out.append(Expression(f"rule: {name}", " ".join(str(rule["expr"]).split())))
    return out


def all_expressions() -> list[Expression]:
    return dashboard_expressions() + rule_expressions()


# Identifiers that are PromQL keywords or functions, never metric names.
_NOT_METRICS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "absent", "absent_over_time",
    "vector", "scalar", "clamp_min", "clamp_max", "clamp", "abs", "ceil", "floor", "round", "time", "timestamp",
    "label_replace", "label_join", "sort", "sort_desc", "changes", "resets", "predict_linear",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "last_over_time",
    "quantile_over_time", "le", "inf", "nan",
}  # fmt: skip

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (label names, functions and keywords left out)."""
    text = _STRINGS.sub('""', expr)
    text = _BRACES.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for m in _IDENT.finditer(text):
        word = m.group(0)
        if word.lower() in _NOT_METRICS:
            continue
        # Skip numbers' exponents and duration-like tails ("1e3", "5m") matched after a digit.
        if m.start() > 0 and text[m.start() - 1].isdigit():
            continue
        names.add(word)
    return names


def names_used(expressions: Iterable[Expression]) -> dict[str, set[str]]:
    """Metric name → origins that use it."""
    used: dict[str, set[str]] = {}
    for e in expressions:
        for name in metric_names(e.expr):
            used.setdefault(name, set()).add(e.origin)
    return used

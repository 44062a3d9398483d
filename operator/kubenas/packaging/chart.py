"""Rendering and linting the chart with given values: what the bundle, the tests and users run."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kubenas.packaging.helm import run_helm
from kubenas.packaging.paths import KUBE_VERSION, NAMESPACE, RELEASE, Layout


def _with_values(values: Mapping[str, Any] | None, args: list[str]) -> tuple[list[str], Path | None]:
    if not values:
        return args, None
    # A values file rather than --set: lists and strings that look like numbers survive unchanged.
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="kubenas-values-", delete=False) as fh:
        json.dump(values, fh)
    return [*args, "--values", fh.name], Path(fh.name)


def template(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    include_crds: bool = False,
    layout: Layout | None = None,
    helm: Path | None = None,
) -> str:
    """``helm template`` of the chart: the manifests as one YAML stream."""
    layout = layout or Layout()
    args = ["template", release, str(layout.chart), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    if include_crds:
        args.append("--include-crds")
    args, tmp = _with_values(values, args)
    try:
        return run_helm(args, helm=helm)
    finally:
        if tmp:
            tmp.unlink()


def objects(values: Mapping[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
    """The rendered manifests as dicts (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(template(values, **kw)) if doc]


def lint(values: Mapping[str, Any] | None = None, *, layout: Layout | None = None, helm: Path | None = None) -> str:
    """``helm lint --strict``; raises :class:`~kubenas.packaging.helm.HelmError` with helm's findings."""
    layout = layout or Layout()
    args, tmp = _with_values(values, ["lint", str(layout.chart), "--strict", "--kube-version", KUBE_VERSION])
    try:
        return run_helm(args, helm=helm)
    finally:
        if tmp:
            tmp.unlink()

"""Write every generated part of the chart and the bundle, or report which ones drifted."""

from __future__ import annotations

from pathlib import Path

from kubenas.packaging import admission, bundle, crds, dashboard
from kubenas.packaging.paths import Layout


def expected(layout: Layout, *, with_bundle: bool = True, helm: Path | None = None) -> dict[Path, str]:
    """Path → the text it should hold. The bundle is rendered from the chart as it is on disk, so it
    must be computed after the chart's own generated files are written (see :func:`write`)."""
    files = {layout.chart_crds / name: text for name, text in crds.chart_crds().items()}
    files[layout.dashboard] = dashboard.render()
    files[layout.admission_policy] = admission.render()
    if with_bundle:
        files[layout.bundle] = bundle.render(layout, helm)
    return files


def write(layout: Layout | None = None, *, with_bundle: bool = True, helm: Path | None = None) -> list[Path]:
    layout = layout or Layout()
    written = []
    for path, text in expected(layout, with_bundle=False).items():
        written += _write(path, text)
    stale = {p for p in layout.chart_crds.glob("*.yaml")} - set(expected(layout, with_bundle=False))
    for path in sorted(stale):  # a CRD that is no longer generated; before the bundle, which renders crds/
        path.unlink()
        written.append(path)
    if with_bundle:
        written += _write(layout.bundle, bundle.render(layout, helm))
    return written


def _write(path: Path, text: str) -> list[Path]:
    if path.exists() and path.read_text() == text:
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return [path]


def drifted(layout: Layout | None = None, *, with_bundle: bool = True, helm: Path | None = None) -> list[Path]:
    """Generated files that are missing or differ from what the sources generate."""
    layout = layout or Layout()
    want = expected(layout, with_bundle=with_bundle, helm=helm)
    bad = [p for p, text in want.items() if not p.exists() or p.read_text() != text]
    extra = {p for p in layout.chart_crds.glob("*.yaml")} - set(want)
    return sorted(bad) + sorted(extra)

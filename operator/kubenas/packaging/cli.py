"""``kubenas chart ...``: generate the chart's generated parts and the bundle, or check them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from kubenas.packaging import generate
from kubenas.packaging.helm import HelmError
from kubenas.packaging.paths import Layout

app = typer.Typer(help="The Helm chart and the kubectl bundle.", no_args_is_help=True)

_Root = Annotated[Path, typer.Option(help="Repository root holding charts/ and deploy/.")]
_Helm = Annotated[Path | None, typer.Option(help="helm binary (default: the cluster build's, then PATH).")]
_NoBundle = Annotated[bool, typer.Option("--no-bundle", help="Skip deploy/kubenas.yaml (needs no helm).")]


def _run(fn: Callable[..., list[Path]], root: Path, helm: Path | None, no_bundle: bool) -> list[Path]:
    """Call a generator; a missing or failing helm exits 2 with helm's message."""
    try:
        return fn(Layout(root), with_bundle=not no_bundle, helm=helm)
    except HelmError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command("generate")
def generate_cmd(root: _Root = Path("."), helm: _Helm = None, no_bundle: _NoBundle = False) -> None:
    """Write the chart's CRDs and dashboard, then render deploy/kubenas.yaml from the chart."""
    written = _run(generate.write, root, helm, no_bundle)
    for path in written:
        typer.echo(f"wrote {path}")
    if not written:
        typer.echo("everything was up to date")


@app.command("check")
def check_cmd(root: _Root = Path("."), helm: _Helm = None, no_bundle: _NoBundle = False) -> None:
    """Exit 1 when a generated file differs from what its source generates."""
    stale = _run(generate.drifted, root, helm, no_bundle)
    if stale:
        typer.echo("out of date: " + ", ".join(str(p) for p in stale) + "; run `kubenas chart generate`", err=True)
        raise typer.Exit(1)
    typer.echo("chart and bundle are up to date")


def register(parent: typer.Typer) -> None:
    """Mount as ``kubenas chart``."""
    parent.add_typer(app, name="chart")

"""``kubenas status``, ``kubenas logs`` and ``kubenas watch``: a read-only view of cluster experiments."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

KUBECONFIG_HELP = "Kubeconfig (default: $KUBECONFIG, ~/.kube/config)."


def _client(kubeconfig: Path | None, context: str | None) -> object:
    from kubenas.insights.cluster import ClusterViewError, api_client

    try:
        return api_client(str(kubeconfig) if kubeconfig else None, context)
    except ClusterViewError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _namespace(namespace: str | None, kubeconfig: Path | None, context: str | None) -> str:
    """The namespace given, else the kubeconfig context's, else ``default`` (as kubectl picks it)."""
    if namespace:
        return namespace
    from kubernetes import config

    try:
        contexts, current = config.list_kube_config_contexts(config_file=str(kubeconfig) if kubeconfig else None)
        chosen = next((c for c in contexts if c["name"] == context), current) if context else current
        return str((chosen or {}).get("context", {}).get("namespace") or "default")
    except (config.ConfigException, OSError):
        return "default"


def status(
    experiment: str = typer.Argument(..., help="SearchExperiment name."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Namespace (default: the context's)."),
    top: int = typer.Option(10, "--top", min=1, help="Rows of the leaderboard."),
    kubeconfig: Path | None = typer.Option(None, help=KUBECONFIG_HELP),
    context: str | None = typer.Option(None, help="Kubeconfig context."),
) -> None:
    """An experiment on the cluster: phase, progress, budget, leaderboard, best genotype, importance, motifs."""
    from kubenas.insights.cluster import ClusterViewError, read_snapshot, status_view

    api = _client(kubeconfig, context)
    try:
        snap = read_snapshot(api, _namespace(namespace, kubeconfig, context), experiment)
    except ClusterViewError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    Console().print(status_view(snap, top))


def watch(
    experiment: str = typer.Argument(..., help="SearchExperiment name."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Namespace (default: the context's)."),
    interval: float = typer.Option(5.0, "--interval", min=0.5, help="Seconds between refreshes."),
    top: int = typer.Option(10, "--top", min=1, help="Rows of the leaderboard."),
    kubeconfig: Path | None = typer.Option(None, help=KUBECONFIG_HELP),
    context: str | None = typer.Option(None, help="Kubeconfig context."),
) -> None:
    """`kubenas status`, refreshed in place until the experiment ends (Ctrl-C to leave)."""
    from rich.live import Live

    from kubenas.insights.cluster import ClusterViewError, read_snapshot
    from kubenas.insights.cluster import watch as watch_loop

    api = _client(kubeconfig, context)
    ns = _namespace(namespace, kubeconfig, context)
    console = Console()
    try:
        with Live(console=console, auto_refresh=False, screen=False) as live:
            watch_loop(
                lambda: read_snapshot(api, ns, experiment),
                lambda view: live.update(view, refresh=True),
                interval,
                time.sleep,
                top,
            )
    except ClusterViewError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def logs(
    trial: str = typer.Argument(..., help="Trial name, e.g. my-search-00042."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Namespace (default: the context's)."),
    tail: int | None = typer.Option(None, "--tail", min=1, help="Only the last lines of each pod's log."),
    kubeconfig: Path | None = typer.Option(None, help=KUBECONFIG_HELP),
    context: str | None = typer.Option(None, help="Kubeconfig context."),
) -> None:
    """A trial's outcome, its trainer's log with the per-epoch metrics, and its termination messages."""
    from kubenas.insights.cluster import ClusterViewError, logs_view, read_logs

    api = _client(kubeconfig, context)
    try:
        found = read_logs(api, _namespace(namespace, kubeconfig, context), trial, tail)
    except ClusterViewError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    Console().print(logs_view(found))


def register(app: typer.Typer) -> None:
    """Add ``status``, ``watch`` and ``logs`` to the top-level command."""
    app.command("status")(status)
    app.command("watch")(watch)
    app.command("logs")(logs)

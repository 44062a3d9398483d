"""``kubenas cluster ...``: build, start, inspect and stop the development cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from kubenas_dev.cluster import build
from kubenas_dev.cluster import log as devlog
from kubenas_dev.cluster.errors import DevClusterError
from kubenas_dev.cluster.nodes import DEFAULT_NODES, parse_node_option

if TYPE_CHECKING:
    from kubenas_dev.cluster.launcher import Cluster


def _attach(cluster_dir: Path) -> Cluster:
    # The launcher pulls in the kubernetes client (seconds to import); `build` does not need it.
    from kubenas_dev.cluster.launcher import Cluster

    return Cluster.attach(cluster_dir.resolve())


app = typer.Typer(help="A real Kubernetes control plane on loopback, for development and tests.", no_args_is_help=True)

DEFAULT_DIR = Path(".cache/cluster")
DirOption = typer.Option(DEFAULT_DIR, "--dir", help="Cluster directory (state, kubeconfig, logs).")


def _fail(err: DevClusterError) -> None:
    typer.secho(str(err), fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.command("build")
def build_cmd(
    force: bool = typer.Option(False, help="Rebuild even if the cache holds the binaries."),
    jobs: int = typer.Option(0, help="Go build parallelism (default: CPUs, at most 4)."),
) -> None:
    """Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, helm and Kueue (once per machine)."""
    from kubenas_dev.kueue import build as kueue_build

    devlog.configure()
    tc = build.toolchain()
    cached = tc.manifest()
    kb = kueue_build.kueue_build()
    kueue_cached = kb.manifest()
    try:
        manifest = build.ensure_built(force=force, parallelism=jobs or None)
        kueue = kueue_build.ensure_built(force=force, parallelism=jobs or None)
    except DevClusterError as err:
        _fail(err)
        return
    if cached and not force:
        typer.echo(f"cached: {tc.home} (built in {manifest.build_seconds:.0f}s on {manifest.built_at})")
    if kueue_cached and not force:
        typer.echo(f"cached: {kb.home} (built in {kueue.build_seconds:.0f}s on {kueue.built_at})")
    for name, path in sorted({**manifest.binaries, "kueue": kueue.binary}.items()):
        typer.echo(f"  {name:<24} {path}")


@app.command()
def up(
    cluster_dir: Path = DirOption,
    node: list[str] = typer.Option(
        [], "--node", help="name[:cpu=8,memory=16Gi,gpus=2,pods=110]; repeatable (default: a CPU and a GPU node)."
    ),
    timeout: float = typer.Option(240.0, help="Seconds to wait for every component to be ready."),
) -> None:
    """Start etcd, the control plane and the node agent on 127.0.0.1; print the kubeconfig path."""
    from kubenas_dev.cluster.launcher import Cluster, StartOptions

    devlog.configure()
    nodes = tuple(parse_node_option(n) for n in node) or DEFAULT_NODES
    try:
        cluster = Cluster.start(cluster_dir, StartOptions(nodes=nodes, timeout=timeout))
    except DevClusterError as err:
        _fail(err)
        return
    typer.echo(f"cluster ready in {cluster.state.start_seconds:.1f}s: {cluster.state.server}")
    typer.echo(f"nodes: {', '.join(cluster.state.nodes)}")
    typer.echo(f"export KUBECONFIG={cluster.kubeconfig}")
    typer.echo(str(cluster.kubeconfig))


@app.command()
def down(cluster_dir: Path = DirOption) -> None:
    """Stop every process of the cluster and remove its directory."""
    devlog.configure()
    try:
        cluster = _attach(cluster_dir)
    except DevClusterError as err:
        _fail(err)
        return
    leftovers = cluster.stop(remove=True)
    strays = f" ({len(leftovers)} stray processes killed)" if leftovers else ""
    typer.echo(f"cluster in {cluster_dir} stopped{strays}")


@app.command()
def status(
    cluster_dir: Path = DirOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show whether the cluster in ``--dir`` runs, and where."""
    try:
        cluster = _attach(cluster_dir)
    except DevClusterError as err:
        _fail(err)
        return
    info = cluster.status()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{'running' if info['running'] else 'NOT running'}: {info['server']}")
    typer.echo(f"kubeconfig: {info['kubeconfig']}")
    for name, alive in info["processes"].items():
        typer.echo(f"  {name:<24} {'up' if alive else 'down'}")
    if not info["running"]:
        raise typer.Exit(1)

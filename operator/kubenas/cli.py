"""The ``kubenas`` command line."""

from __future__ import annotations

import typer

from kubenas.bench import cli as bench_cli
from kubenas.devcluster import cli as cluster_cli
from kubenas.operator import cli as operator_cli

app = typer.Typer(
    help="Kubenas: neural architecture search on Kubernetes, or on this machine.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
bench_app = typer.Typer(help="Benchmarks: tabular search, operator turnaround.", no_args_is_help=True)
bench_cli.register(bench_app)
operator_cli.register_bench(bench_app)
app.add_typer(bench_app, name="bench")
app.add_typer(cluster_cli.app, name="cluster")
app.add_typer(operator_cli.app, name="operator")


@app.command()
def version() -> None:
    """Print the Kubenas version."""
    from kubenas import __version__

    typer.echo(__version__)


if __name__ == "__main__":
    app()

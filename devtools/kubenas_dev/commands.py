"""The commands this package adds to ``kubenas``: ``kubenas cluster ...`` and ``kubenas bench operator``.

Declared as the ``kubenas.commands`` entry point in this package's pyproject.toml; the ``kubenas``
command calls :func:`register` with its root Typer app and the ``bench`` group.
"""

from __future__ import annotations

import typer

from kubenas_dev.cluster import cli as cluster_cli
from kubenas_dev.opbench.cli import bench_command


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Mount ``cluster`` on the root app and ``operator`` on ``bench``."""
    app.add_typer(cluster_cli.app, name="cluster")
    bench.command("operator")(bench_command)

"""``kubenas cluster ...``: build, start, inspect and stop the development cluster."""

from __future__ import annotations

import typer

app = typer.Typer(help="A real Kubernetes control plane on loopback, for development and tests.", no_args_is_help=True)

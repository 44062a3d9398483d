"""``kubenas operator`` and ``kubenas bench operator``."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run the Kubenas operator.", no_args_is_help=False)


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``kubenas bench operator`` to ``kubenas bench``."""

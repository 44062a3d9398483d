"""``kubenas bench search ...``: the tabular benchmark."""

from __future__ import annotations

import typer


def register(bench_app: typer.Typer) -> None:
    """Add the tabular benchmark commands to ``kubenas bench``."""

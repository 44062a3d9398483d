"""``python -m kubenas.controller serve``: the same as ``kubenas controller serve``."""

from kubenas.controller.cli import app

app(prog_name="kubenas controller")

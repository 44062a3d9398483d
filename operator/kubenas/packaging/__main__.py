"""``python -m kubenas.packaging generate|check``: the same as ``kubenas chart ...``."""

from kubenas.packaging.cli import app

app(prog_name="kubenas chart")

"""Commands from other distributions: the development tools add theirs through entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import typer
from typer.testing import CliRunner

from kubenas import cli


def test_the_development_tools_declare_their_commands() -> None:
    names = {e.value for e in entry_points(group=cli.COMMANDS_GROUP)}
    assert "kubenas_dev.commands:register" in names


def test_cluster_and_bench_operator_come_from_the_development_tools() -> None:
    runner = CliRunner()
    cluster = runner.invoke(cli.app, ["cluster", "--help"])
    assert cluster.exit_code == 0, cluster.output
    assert all(sub in cluster.output for sub in ("build", "up", "down", "status"))
    bench = runner.invoke(cli.app, ["bench", "operator", "--help"])
    assert bench.exit_code == 0, bench.output
    assert "--trials" in bench.output


def test_a_missing_development_command_says_where_it_comes_from() -> None:
    app = typer.Typer()

    @app.command()
    def other() -> None:
        """Keeps the app a group."""

    cli._missing(app, "cluster", "kubenas cluster")
    out = CliRunner().invoke(app, ["cluster", "up", "--dir", "x"])
    assert out.exit_code == 2
    assert "`kubenas cluster` comes with the development tools" in out.output and "devtools" in out.output


def test_a_plugin_that_cannot_be_imported_leaves_the_built_in_commands_working(tmp_path: Path) -> None:
    # a stale install: its entry point names a module that is gone
    dist = tmp_path / "stale_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: stale-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{cli.COMMANDS_GROUP}]\nstale = no_such_module_here:register\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-m", "kubenas.cli", "version"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()  # the version
    assert "plugin 'stale' not loaded" in out.stderr and "no_such_module_here" in out.stderr

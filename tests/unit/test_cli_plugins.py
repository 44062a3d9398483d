"""Commands from other distributions: the development tools add theirs through entry points."""

from __future__ import annotations

from importlib.metadata import entry_points

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

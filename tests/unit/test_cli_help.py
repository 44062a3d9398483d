"""The command line as a new user meets it: help without stray types, one clear line when no cluster is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubenas.cli import app


@pytest.mark.parametrize(
    "args", [["--help"], ["operator", "--help"], ["status", "--help"], ["bench", "search", "--help"]]
)
def test_help_shows_no_bool_type_beside_flags(args: list[str]) -> None:
    out = CliRunner().invoke(app, args, env={"COLUMNS": "140"})
    assert out.exit_code == 0, out.output
    assert "--help" in out.output and "<bool>" not in out.output


@pytest.mark.parametrize("command", [["status", "exp"], ["logs", "exp-00000"], ["watch", "exp"]])
def test_cluster_views_without_a_kubeconfig_say_so_in_one_line(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    out = CliRunner().invoke(app, command, env={"KUBECONFIG": str(tmp_path / "missing"), "HOME": str(tmp_path)})
    assert out.exit_code == 2
    assert out.output.strip().splitlines() == [
        "error: no kubeconfig found (--kubeconfig, $KUBECONFIG or ~/.kube/config) and not running in a pod"
    ]

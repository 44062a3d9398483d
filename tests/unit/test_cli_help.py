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


def test_operator_without_a_kubeconfig_says_so_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    out = CliRunner().invoke(app, ["operator"], env={"KUBECONFIG": str(tmp_path / "missing"), "HOME": str(tmp_path)})
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and "no kubeconfig found" in lines[0] and "Traceback" not in out.output


def test_yaml_syntax_errors_name_the_file(tmp_path: Path) -> None:
    from kubenas.load import ManifestError, load_experiment

    bad = tmp_path / "broken.yaml"
    bad.write_text("apiVersion: kubenas.io/v1alpha1\nkind: SearchExperiment\nmetadata: {name: x\nspec: [\n")
    with pytest.raises(ManifestError) as err:
        load_experiment(bad)
    assert f'in "{bad}", line 3' in str(err.value) and "<unicode string>" not in str(err.value)


def test_the_reason_column_reads_a_condition_the_operator_writes() -> None:
    from datetime import UTC, datetime

    from kubenas.api.crd import crds
    from kubenas.operator import status

    exp = crds()["kubenas.io_searchexperiments.yaml"]
    columns = exp["spec"]["versions"][0]["additionalPrinterColumns"]
    path = next(c["jsonPath"] for c in columns if c["name"] == "Reason")
    assert path == f'.status.conditions[?(@.type=="{status.RUNNING}")].reason'
    written = status.set_condition([], status.RUNNING, False, "MaxTrialsReached", "done", datetime.now(UTC), 1)
    assert [c["reason"] for c in written if c["type"] == status.RUNNING] == ["MaxTrialsReached"]


def test_toy_examples_do_not_depend_on_a_bare_python() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    for path in examples.glob("*.yaml"):
        assert "[python," not in path.read_text(), path

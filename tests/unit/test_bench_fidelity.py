"""The tabular benchmark under a simulated-time budget, with cheap signals judged by a stopping rule."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubenas.api.early_stopping import EarlyStopping
from kubenas.bench.tabular import Costs, Fidelity, experiment_spec, load_table, parse_fidelity, run_costed_search
from kubenas.cli import app
from kubenas.core.driver import Driver
from kubenas.core.errors import SpecError
from tests.unit.test_bench_tabular import drivers  # noqa: F401 (the fixture: every Driver the benchmark builds)

COST = 10.0


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """6 x 6 architectures; the cheap signal ranks them as the full one does, at a tenth of the cost."""
    path = tmp_path / "mf.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["x_a", "x_b", "val", "test", "cost", "cheap"])
        for a in range(6):
            for b in range(6):
                val = 50 + 3 * a + 2 * b
                w.writerow([a, b, val, val + 1, COST, val / 2])
    return path


def test_a_cost_budget_ends_the_search_before_a_trial_that_does_not_fit(table: Path) -> None:
    data = load_table(table, "val", "test", [("--cost", "cost")])
    spec = experiment_spec(data, "random", 0, 30, 1)
    curve, final = run_costed_search(data, spec, Costs(budget_seconds=3.5 * COST, column="cost"))
    assert len(curve) == 3 and final == curve[-1]
    assert run_costed_search(data, spec, Costs())[0][:3] == curve  # the same search, cut by the budget


def test_pruned_trials_cost_their_fidelity_and_only_full_results_become_incumbents(
    table: Path,
    drivers: list[Driver],  # noqa: F811
) -> None:
    cheap = Fidelity("cheap", 0.1)
    data = load_table(table, "val", "test", [("--cost", "cost"), ("--fidelity", "cheap")])
    rule = EarlyStopping(rule="asha", min_resource=cheap.step, max_resource=100, reduction_factor=3)
    spec = experiment_spec(data, "random", 1, 36, 1, early_stopping=rule)
    budget = 12 * COST
    curve, final = run_costed_search(data, spec, Costs(budget, "cost", (cheap,)))
    trials = drivers[-1].trials
    told = [t for t in trials if t.told]
    pruned = [t for t in told if t.phase == "Pruned"]
    full = [t for t in told if t.phase == "Succeeded"]
    assert pruned and full and len(told) == len(curve) > 12  # more trials than full trainings fit
    assert all(t.curve == ((cheap.step, t.metrics["val"]),) for t in pruned)  # judged on the cheap signal
    spent = COST * (len(full) + cheap.fraction * len(pruned))
    assert spent <= budget < spent + COST
    assert final == max(full, key=lambda t: t.reward or 0).metrics["val"] + 1  # report of the best full result


def test_fidelity_text_is_checked() -> None:
    assert parse_fidelity("val_acc_12ep:0.06") == Fidelity("val_acc_12ep", 0.06)
    assert parse_fidelity("val_acc_12ep:0.06").step == 6
    for bad in ("val_acc_12ep", "x:1.5", ":0.1", "x:abc"):
        with pytest.raises(SpecError) as info:
            parse_fidelity(bad)
        assert info.value.field == "--fidelity"


def test_the_cli_reports_final_and_refuses_a_rule_without_a_cheap_signal(table: Path, tmp_path: Path) -> None:
    out = tmp_path / "mf.json"
    args = ["bench", "search", str(table), "--signal", "val", "--report", "test", "--strategy", "random"]
    args += ["--trials", "40", "--seeds", "2", "--budget-seconds", str(8 * COST), "--cost", "cost"]
    result = CliRunner().invoke(app, [*args, "--fidelity", "cheap:0.1", "--early-stopping", "asha", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["budget_seconds"] == 8 * COST and set(data["final"]) == {"mean", "std"}
    refused = CliRunner().invoke(app, [*args, "--early-stopping", "asha"])
    assert refused.exit_code != 0 and "--fidelity" in refused.output


@pytest.mark.parametrize("cell", ["", "soon", "-5", "inf"])
def test_a_row_without_a_usable_cost_is_a_failed_trial_and_the_budget_still_holds(
    tmp_path: Path,
    cell: str,
    drivers: list[Driver],  # noqa: F811
) -> None:
    # a NaN cost made the spent time NaN, and every later "would it fit" test false: no budget at all
    path = tmp_path / "costs.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["x_a", "x_b", "val", "test", "cost"])
        for a in range(6):
            for b in range(6):
                w.writerow([a, b, 50 + a + b, 60 + a + b, cell if (a + b) % 2 else COST])
    data = load_table(path, "val", "test", [("--cost", "cost")])
    curve, _ = run_costed_search(data, experiment_spec(data, "grid", 0, 36, 1), Costs(5.5 * COST, "cost"))
    trials = drivers[-1].trials
    assert len(curve) < 36  # the budget ended the search
    failed = [t for t in trials if t.phase == "Failed"]
    assert failed and all((t.architecture["a"] + t.architecture["b"]) % 2 and t.reason == "NoCost" for t in failed)
    assert sum(t.phase == "Succeeded" for t in trials) == 5  # 5.5 trainings' time: five fit


@pytest.mark.parametrize("seconds", ["0", "-1", "inf", "nan"])
def test_a_budget_of_no_seconds_is_refused_not_read_as_none(table: Path, seconds: str) -> None:
    args = ["bench", "search", str(table), "--signal", "val", "--report", "test", "--strategy", "random"]
    result = CliRunner().invoke(app, [*args, "--trials", "5", "--seeds", "1", "--budget-seconds", seconds])
    assert result.exit_code == 2 and "--budget-seconds" in result.output, result.output


def test_the_cost_column_is_checked_whenever_a_budget_is_given(table: Path) -> None:
    args = ["bench", "search", str(table), "--signal", "val", "--report", "test", "--strategy", "random"]
    result = CliRunner().invoke(app, [*args, "--budget-seconds", "100", "--cost", "nope"])
    assert result.exit_code == 2 and "--cost" in result.output and "'nope'" in result.output

"""The tabular benchmark on small generated tables: loading, the search loop, the summary and the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kubenas.bench.synthetic import nk_table
from kubenas.bench.tabular import (
    Costs,
    Summary,
    Table,
    benchmark,
    budgets_for,
    experiment_spec,
    load_table,
    run_costed_search,
    run_search,
    summarize,
)
from kubenas.cli import app
from kubenas.core.driver import Driver
from kubenas.core.errors import SpecError
from kubenas.core.search import Search


@pytest.fixture
def nk(tmp_path: Path) -> Path:
    return nk_table(tmp_path / "nk.csv", choices=(3, 4, 2, 3), interactions=1, seed=2)


@pytest.fixture
def holes(tmp_path: Path) -> Path:
    """A 3 x 3 table with numeric choices, one empty signal and one architecture missing."""
    path = tmp_path / "holes.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["x_Width", "x_op", "val", "test", "other"])
        for width in (16, 8, 32):
            for op in ("conv", "pool", "skip"):
                if (width, op) == (32, "skip"):
                    continue
                val = "" if (width, op) == (8, "pool") else str(width + len(op))
                w.writerow([width, op, val, width * 2 + len(op), 1])
    return path


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> list[Search]:
    """Every Search the benchmark builds, so a test can read its trials afterwards."""
    import kubenas.bench.tabular as tabular

    made: list[Search] = []

    class Recorded(Search):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(tabular, "Search", Recorded)
    return made


@pytest.fixture
def drivers(monkeypatch: pytest.MonkeyPatch) -> list[Driver]:
    """Every Driver the benchmark builds: the trial history of each search."""
    import kubenas.bench.tabular as tabular

    made: list[Driver] = []

    class Recorded(Driver):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(tabular, "Driver", Recorded)
    return made


def test_x_columns_become_decisions_with_sorted_typed_choices(holes: Path) -> None:
    table = load_table(holes, "val", "test")
    assert table.decisions == (("width", (8, 16, 32)), ("op", ("conv", "pool", "skip")))
    assert table.rows[(16, "conv")] == (20.0, 36.0)
    assert math.isnan(table.rows[(8, "pool")][0])


def test_columns_of_fractional_or_float_written_numbers_are_searchable_in_their_order(tmp_path: Path) -> None:
    # A categorical decision takes integers or strings: a learning rate's grid is searched as the ranks
    # of its values, widths a data frame wrote as 16.0 as the integers they are; the rows follow.
    path = tmp_path / "hpo.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["x_lr", "x_width", "x_act", "val", "test"])
        for lr in ("0.1", "0.001", "0.01", "1e-4"):
            for width in ("16.0", "8.0", "32.0"):
                for act in ("relu", "gelu"):
                    score = -abs(math.log10(float(lr)) + 2) + float(width) / 32 + (act == "gelu")
                    w.writerow([lr, width, act, score, score])
    table = load_table(path, "val", "test")
    assert table.decisions == (("lr", (0, 1, 2, 3)), ("width", (8, 16, 32)), ("act", ("gelu", "relu")))
    assert table.rows[(2, 32, "gelu")] == (2.0, 2.0)  # lr 0.01 is the third smallest of 1e-4 < 0.001 < 0.01 < 0.1
    for strategy in ("progressive", "tpe", "random"):
        curve = run_search(table, experiment_spec(table, strategy, seed=0, trials=24, parallel=1))
        assert curve[-1] == 2.0, strategy  # every one of the 24 rows can be asked: the whole table is searched


def test_a_byte_order_mark_does_not_hide_the_first_decision(holes: Path, tmp_path: Path) -> None:
    marked = tmp_path / "marked.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + holes.read_bytes())  # what a spreadsheet's "CSV UTF-8" writes
    assert load_table(marked, "val", "test").decisions == load_table(holes, "val", "test").decisions


def test_a_single_objective_may_be_minimised(holes: Path) -> None:
    table = load_table(holes, "val", "test", direction="minimize")
    curve = run_search(table, experiment_spec(table, "grid", seed=0, trials=9, parallel=1))
    assert curve[-1] == 20.0  # the smallest signal (12) is width 8 with conv or skip; both report 2 * 8 + 4
    args = ["bench", "search", str(holes), "--objective", "val:min", "--report", "test", "--strategy", "grid"]
    result = CliRunner().invoke(app, [*args, "--trials", "9", "--seeds", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.split("final")[1].split()[0] == "20.00"


def test_a_missing_column_is_named(holes: Path) -> None:
    with pytest.raises(SpecError, match="--signal"):
        load_table(holes, "nope", "test")


def test_a_table_without_decisions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flat.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SpecError, match="x_"):
        load_table(path, "a", "b")


def test_missing_rows_and_empty_signals_are_failed_trials(holes: Path, drivers: list[Driver]) -> None:
    table = load_table(holes, "val", "test")
    curve = run_search(table, experiment_spec(table, "grid", seed=0, trials=9, parallel=1))
    assert len(curve) == 9
    assert curve[-1] == 68.0  # the best signal (36) is width 32 with conv or pool; both report 2 * 32 + 4
    failed = {(t.architecture["width"], t.architecture["op"]) for t in drivers[0].trials if t.phase == "Failed"}
    assert failed == {(8, "pool"), (32, "skip")}


def test_the_incumbent_is_the_best_by_signal_so_far(nk: Path, drivers: list[Driver]) -> None:
    table = load_table(nk, "signal", "report")
    curve = run_search(table, experiment_spec(table, "progressive", seed=1, trials=40, parallel=1))
    names = [n for n, _ in table.decisions]
    best, expected = -math.inf, []
    for trial in sorted(drivers[0].trials, key=lambda t: t.tell_sequence):
        signal, report = table.rows[tuple(trial.architecture[n] for n in names)]
        if signal > best:
            best, incumbent = signal, report
        expected.append(incumbent)
    assert curve == expected


def test_parallel_keeps_asks_ahead_of_rewards(nk: Path, searches: list[Search], drivers: list[Driver]) -> None:
    table = load_table(nk, "signal", "report")
    spec = experiment_spec(table, "evolution", seed=0, trials=30, parallel=4)
    run_search(table, spec)
    history = drivers[0].trials
    assert len(history) == 30
    assert all(t.asks_before_tell == t.index + 4 for t in history if t.index < 26)
    rebuilt = Search(spec, history)
    assert rebuilt.strategy.state_digest() == searches[0].strategy.state_digest()


def test_budgets_are_the_standard_ones_up_to_the_trials_and_the_trials() -> None:
    assert budgets_for(300) == [50, 100, 150, 300]
    assert budgets_for(120) == [50, 100, 120]
    assert budgets_for(20) == [20]


def test_summary_is_mean_and_std_over_seeds() -> None:
    curves = [[1.0] * 60, [3.0] * 60, [math.nan] * 49 + [5.0] * 11]
    summary = summarize("random", curves, 60)
    assert summary.budgets[50] == (3.0, pytest.approx(math.sqrt(8 / 3)))
    out = summary.to_json()
    assert out["strategy"] == "random" and out["seeds"] == 3
    assert set(out["budgets"]) == {"50", "60"}
    assert out["per_seed"]["50"] == [1.0, 3.0, 5.0] and out["per_seed"]["60"] == [1.0, 3.0, 5.0]


@pytest.mark.parametrize("strategy", ["random", "evolution", "progressive"])
def test_same_seeds_same_figures_in_one_process_or_two(nk: Path, strategy: str) -> None:
    table = load_table(nk, "signal", "report")
    one = benchmark(table, strategy, trials=30, seeds=2, parallel=2, jobs=1)
    two = benchmark(table, strategy, trials=30, seeds=2, parallel=2, jobs=2)
    assert one == two


def test_cli_prints_and_writes_the_json_summary(nk: Path, tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    args = ["bench", "search", str(nk), "--signal", "signal", "--report", "report", "--strategy", "evolution"]
    args += ["--trials", "60", "--seeds", "3", "--parallel", "2", "--json", str(out), "--set", "population_size=10"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "evolution: 3 seeds x 60 trials" in result.output
    summary = json.loads(out.read_text())
    assert summary["strategy"] == "evolution" and summary["seeds"] == 3
    assert set(summary["budgets"]) == {"50", "60"}
    assert set(summary["budgets"]["50"]) == {"mean", "std"}


def test_cli_names_a_bad_setting(nk: Path) -> None:
    args = ["bench", "search", str(nk), "--signal", "signal", "--report", "report", "--strategy", "evolution"]
    result = CliRunner().invoke(app, [*args, "--set", "population_size=0"])
    assert result.exit_code != 0


def test_cli_writes_an_nk_table(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    result = CliRunner().invoke(app, ["bench", "nk-table", str(out), "--choices", "2,3", "--interactions", "1"])
    assert result.exit_code == 0, result.output
    table = load_table(out, "signal", "report")
    assert [len(c) for _, c in table.decisions] == [2, 3] and len(table.rows) == 6


def test_generated_ordered_decisions_hold_numbers_and_near_values_score_alike(tmp_path: Path) -> None:
    # contributions are random walks along an ordered decision: one step apart differ about half as
    # much as six steps apart (a walk's spread grows with the square root of its length)
    path = nk_table(tmp_path / "w.csv", choices=(12, 8, 3), interactions=1, seed=4, ordered=(0, 1))
    table = load_table(path, "signal", "report")
    assert [c for _, c in table.decisions][:2] == [tuple(range(8, 104, 8)), tuple(range(8, 72, 8))]
    assert table.decisions[2][1] == ("v0", "v1", "v2")
    report = {key: r for key, (_, r) in table.rows.items()}
    widths = table.decisions[0][1]
    near, far = [], []
    for key, value in report.items():
        i = widths.index(key[0])
        if i + 1 < len(widths):
            near.append(abs(report[(widths[i + 1], *key[1:])] - value))
        if i + 6 < len(widths):
            far.append(abs(report[(widths[i + 6], *key[1:])] - value))
    assert sum(near) / len(near) < 0.6 * sum(far) / len(far)


def test_generated_numbered_choices_are_bare_numbers(tmp_path: Path) -> None:
    path = nk_table(tmp_path / "n.csv", choices=(3, 4), interactions=1, seed=1, numbered=True)
    table = load_table(path, "signal", "report")
    assert [c for _, c in table.decisions] == [(0, 1, 2), (0, 1, 2, 3)]


# -- tables that cannot be read one way only are refused, naming the line or the column --------------


def _write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_blank_and_comma_only_lines_are_no_rows(tmp_path: Path) -> None:
    # what a spreadsheet exports for empty rows: they must not add a '' choice and turn 0, 1 into strings
    path = _write(tmp_path, "x_a,x_b,val,test\n0,p,1,2\n\n,,,\n1,q,3,4\n , ,,\n")
    table = load_table(path, "val", "test")
    assert table.decisions == (("a", (0, 1)), ("b", ("p", "q")))
    assert table.rows == {(0, "p"): (1.0, 2.0), (1, "q"): (3.0, 4.0)}


def test_a_row_with_an_empty_decision_cell_is_refused_naming_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "x_a,x_b,val,test\n0,p,1,2\n1,,3,4\n")
    with pytest.raises(SpecError, match=r"line 3 has no value in decision column 'x_b'"):
        load_table(path, "val", "test")


@pytest.mark.parametrize("row", ["1,p,3", "1,p,3,4,5"])
def test_a_ragged_row_is_refused_naming_its_line(tmp_path: Path, row: str) -> None:
    path = _write(tmp_path, f"x_a,x_b,val,test\n0,p,1,2\n{row}\n")
    with pytest.raises(SpecError, match=r"line 3 has \d cells, the header 4"):
        load_table(path, "val", "test")
    search = ["bench", "search", str(path), "--signal", "val", "--report", "test", "--strategy", "random"]
    ask = ["bench", "ask-cost", str(path), "--signal", "val", "--strategy", "random", "--history", "1", "--asks", "1"]
    for args in (search, ask):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "line 3" in result.output, result.output


@pytest.mark.parametrize(("first", "second"), [("0", "0"), ("1", "01"), ("16", "16.0")])
def test_two_rows_of_one_architecture_are_refused_naming_both_lines(tmp_path: Path, first: str, second: str) -> None:
    path = _write(tmp_path, f"x_a,x_b,val,test\n{first},p,1,2\n5,q,0,0\n{second},p,3,4\n")
    with pytest.raises(SpecError, match=rf"line 2 \(x_a={first}, x_b=p\) and line 4 \(x_a={second}, x_b=p\)"):
        load_table(path, "val", "test")


def test_a_header_without_rows_is_refused_as_such(tmp_path: Path) -> None:
    path = _write(tmp_path, "x_a,val,test\n\n")
    with pytest.raises(SpecError, match="the table has no rows"):
        load_table(path, "val", "test")


def test_a_table_separated_by_semicolons_gets_a_hint(tmp_path: Path) -> None:
    path = _write(tmp_path, "x_a;val;test\n0;1;2\n")
    with pytest.raises(SpecError, match="semicolons") as info:
        load_table(path, "val", "test")
    assert info.value.field == "--signal"


@pytest.mark.parametrize("cell", ["", "high", "-inf", "nan"])
def test_a_signal_column_without_a_finite_number_is_refused(tmp_path: Path, cell: str) -> None:
    path = _write(tmp_path, f"x_a,val,test\n0,{cell},2\n1,{cell},3\n")
    with pytest.raises(SpecError, match="'val' holds no finite number") as info:
        load_table(path, "val", "test")
    assert info.value.field == "--signal"


@pytest.mark.parametrize("cell", ["", "n/a", "inf"])
def test_a_row_with_a_signal_but_no_report_value_is_refused_naming_it(tmp_path: Path, cell: str) -> None:
    # it could become the incumbent, and its seed would drop out of the mean while the header counts it
    path = _write(tmp_path, f"x_a,val,test\n0,1,2\n1,9,{cell}\n2,,\n3,5,{cell}\n")
    with pytest.raises(SpecError, match=r"'test' has no finite number on line 3, 5, where 'val' has one") as info:
        load_table(path, "val", "test")
    assert info.value.field == "--report"


@pytest.mark.parametrize("cell", ["inf", "-inf"])
def test_a_signal_that_is_not_finite_is_a_failed_trial(tmp_path: Path, cell: str, drivers: list[Driver]) -> None:
    path = _write(tmp_path, f"x_a,val,test\n0,1,10\n1,{cell},20\n2,3,30\n")
    table = load_table(path, "val", "test")
    curve = run_search(table, experiment_spec(table, "grid", seed=0, trials=3, parallel=1))
    assert curve[-1] == 30.0  # neither an unbeatable inf nor a -inf that counts yet never leads
    assert [t.architecture["a"] for t in drivers[0].trials if t.phase == "Failed"] == [1]


# -- hypervolume by trial count, strict JSON ----------------------------------------------------------


def test_hypervolume_at_a_count_holds_the_results_of_the_first_trials_only(
    tmp_path: Path, drivers: list[Driver]
) -> None:
    from kubenas.bench.hypervolume import Normaliser, hypervolume, parse_objective

    # every result is on the front (more acc costs more size), so each one adds volume; odd rows fail
    lines = [f"{a},{b},{'' if (a + b) % 2 else a * 8 + b},{a * 8 + b}" for a in range(8) for b in range(8)]
    path = _write(tmp_path, "\n".join(["x_a,x_b,acc,size", *lines]) + "\n")
    table = load_table(path, "acc", "acc", [("--objective", "size")])
    objectives = (parse_objective("acc:max"), parse_objective("size:min"))
    columns = {"acc": [v for v, _ in table.rows.values()], "size": list(table.extras["size"].values())}
    norm = Normaliser.of_columns(objectives, columns)
    summary = benchmark(table, "random", trials=64, seeds=1, normaliser=norm)
    trials = sorted(drivers[-1].trials, key=lambda t: t.tell_sequence)
    assert summary.hypervolume is not None
    for b in (50, 64):
        first = [norm.loss(t.metrics) for t in trials[:b] if t.phase == "Succeeded"]
        assert summary.hypervolume[b][0] == pytest.approx(hypervolume([x for x in first if x is not None]))
    assert summary.hypervolume[50][0] < summary.hypervolume[64][0]


def test_every_finished_trial_reaches_on_result_in_curve_order(holes: Path) -> None:
    table = load_table(holes, "val", "test")
    seen: list[Any] = []
    curve, _ = run_costed_search(
        table, experiment_spec(table, "grid", seed=0, trials=9, parallel=1), Costs(), seen.append
    )
    assert len(seen) == len(curve) == 9
    assert sum(m is None for m in seen) == 2  # the empty signal and the missing row: trials without results


def test_json_holds_null_for_figures_that_are_not_finite() -> None:
    summary = Summary("random", 2, {3: (math.inf, math.nan)}, (-math.inf, 0.0), per_seed={3: (math.inf, math.nan)})
    out = json.loads(json.dumps(summary.to_json(), allow_nan=False))  # dumps raises on a bare Infinity or NaN
    assert out["per_seed"]["3"] == [None, None] and out["budgets"]["3"] == {"mean": None, "std": None}
    assert out["final"] == {"mean": None, "std": 0.0}


def test_ask_cost_reports_no_best_signal_as_null_when_no_asked_row_had_one(holes: Path) -> None:
    from kubenas.bench.askcost import ask_cost

    table = load_table(holes, "val", "test")
    empty = Table(table.path, table.signal, table.report, table.decisions, {})  # no architecture in the table
    figures = ask_cost(empty, "random", history=2, asks=2)
    assert figures["best_signal"] is None
    json.dumps(figures, allow_nan=False)


def test_several_objectives_in_one_option_are_refused_as_such(nk: Path) -> None:
    from kubenas.bench.hypervolume import parse_objective

    with pytest.raises(SpecError, match="--objective acc:max --objective params:min") as info:
        parse_objective("acc:max,params:min")
    assert info.value.field == "--objective"
    args = ["bench", "search", str(nk), "--objective", "signal:max,report:min", "--report", "report"]
    result = CliRunner().invoke(app, [*args, "--strategy", "random", "--trials", "5", "--seeds", "1"])
    assert result.exit_code == 2 and "--objective signal:max --objective report:min" in result.output
    assert "--signal" not in result.output


def test_a_missing_first_objective_column_blames_objective(nk: Path) -> None:
    args = ["bench", "search", str(nk), "--objective", "nope:max", "--report", "report", "--strategy", "random"]
    result = CliRunner().invoke(app, [*args, "--trials", "5", "--seeds", "1"])
    assert result.exit_code == 2 and "--objective" in result.output and "--signal" not in result.output

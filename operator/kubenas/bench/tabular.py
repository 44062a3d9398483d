"""The tabular NAS benchmark: a search whose trials look their architecture up in a table.

A table is a CSV file in which every column named ``x_<decision>`` is one categorical decision (its
choices are the distinct values of the column; a column of fractional numbers is searched as their
ranks, see ``_typed``) and the other columns are metrics of the row's
architecture. A search runs through the same :class:`~kubenas.core.search.Search` and engine as a
real experiment; only the trial is replaced by a look-up, completed in ask order (first in, first
out) with ``parallel`` trials outstanding, so ``parallel - 1`` asks are always ahead of rewards.

Protocol (NAS-Bench-201 paper): the strategy searches on ``signal``; after every finished trial the
incumbent is the best-by-signal architecture so far and the benchmark records its ``report`` value.
Architectures missing from the table, and rows whose signal is empty or not a finite number, are
failed trials: the table says the candidate cannot be trained. A table whose rows cannot be read one
way only is refused instead (``load_table``): a ragged row, an empty decision cell, two rows of one
architecture, a signal column without a number, a row with a signal but no report value.

Cost and fidelities (multi-fidelity search). With a cost budget (``budget_seconds``), every trial
costs its row's ``cost`` column (``train_time_s``: the full training) and the search ends when the
next evaluation would not fit; a row without a finite, non-negative cost is a failed trial, as one
without a signal is (its training cannot be charged). A :class:`Fidelity` is a cheaper column
(``val_acc_12ep``) reached after a ``fraction`` of that training: a trial reports it first, as a
point of its learning curve at step ``round(100 * fraction)``, so the driver's stopping rule
(``spec.earlyStopping``) can end it there, having spent only that fraction. A trial that goes on
pays the full cost in all (the cheap signal is on the way to the full one). Only full-fidelity
results become incumbents. ``final`` is the incumbent's report value when the search ends.

Several objectives (``objectives``, ``--objective COLUMN:max|min``): the first is the signal, the
others are further columns reported with it; the strategy searches their Pareto front and the
summary adds the hypervolume of the results of the first ``b`` trials at each trial count ``b``
(failed and pruned trials count as trials; :mod:`kubenas.bench.hypervolume` defines its
normalisation and reference point).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from kubenas.api.early_stopping import EarlyStopping
from kubenas.api.space import Decision, SearchSpaceSpec
from kubenas.api.strategy import SETTINGS_TYPES, StrategySpec
from kubenas.api.v1alpha1 import Budget, Direction, Objective, ObjectiveMetric, SearchExperimentSpec, TrialTemplate
from kubenas.bench.hypervolume import Normaliser, hypervolume
from kubenas.core.driver import AttemptEnded, Driver, Progress, Prune, TrialLost
from kubenas.core.errors import SpecError
from kubenas.core.inprocess import InProcess
from kubenas.core.search import Search

DECISION_PREFIX = "x_"
#: trial counts at which the incumbent is reported (and the full budget, whatever it is)
BUDGETS = (50, 100, 150, 300)

Choice = str | int | float
#: the step of a full-fidelity result: a fidelity's step is its fraction of it
FULL_STEP = 100


@dataclass(frozen=True)
class Table:
    """A benchmark table: its decisions, and each architecture's signal and report values.

    ``rows`` is keyed by the tuple of choices in decision order; both values may be NaN (empty cell).
    """

    path: str
    signal: str
    report: str
    decisions: tuple[tuple[str, tuple[Choice, ...]], ...]
    rows: dict[tuple[Choice, ...], tuple[float, float]] = field(repr=False)
    #: other columns read on request (a cost, cheap signals), keyed like ``rows``
    extras: dict[str, dict[tuple[Choice, ...], float]] = field(default_factory=dict, repr=False)
    #: whether a larger signal is better (an accuracy) or a smaller one (a loss, an error rate)
    direction: Direction = "maximize"


@dataclass(frozen=True)
class Fidelity:
    """A cheap signal: ``column`` is known after ``fraction`` of the full training's cost."""

    column: str
    fraction: float

    @property
    def step(self) -> int:
        return max(1, min(FULL_STEP - 1, round(self.fraction * FULL_STEP)))


def parse_fidelity(text: str) -> Fidelity:
    """``COLUMN:FRACTION`` (``val_acc_12ep:0.06``); SpecError names ``--fidelity`` otherwise."""
    column, sep, fraction = text.rpartition(":")
    try:
        value = float(fraction)
    except ValueError:
        value = math.nan
    if not sep or not column or not 0 < value < 1:
        raise SpecError("--fidelity", f"{text!r} is not COLUMN:FRACTION with 0 < FRACTION < 1")
    return Fidelity(column, value)


@dataclass(frozen=True)
class Costs:
    """The cost side of a search: a budget in simulated seconds, the cost column and cheap signals."""

    budget_seconds: float | None = None
    column: str = "train_time_s"
    fidelities: tuple[Fidelity, ...] = ()


def decision_name(column: str) -> str:
    """The decision name of an ``x_`` column, made a valid Kubernetes-style decision name."""
    name = re.sub(r"[^a-z0-9_]", "_", column[len(DECISION_PREFIX) :].lower())
    if not name or not name[0].isalpha():
        name = f"d_{name}"
    return name[:63]


def _typed(values: Sequence[str]) -> list[Choice]:
    """Column values as ints, else strings, so numeric choices sort numerically and keep their order.

    A categorical decision takes integers or strings only (real values belong in a float decision),
    so a column of numbers that are not all whole (a learning rate's grid, widths written as
    ``16.0`` by a data frame) becomes integers too: whole numbers as themselves, fractional ones as
    the rank of their value (0 for the smallest). The search sees the same choices in the same order,
    which is all a categorical decision's order is; the table's rows are keyed alike."""
    try:
        return [int(v) for v in values]
    except ValueError:
        pass
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return list(values)
    if not all(math.isfinite(x) for x in numbers):
        return list(values)
    if all(x.is_integer() for x in numbers):
        return [int(x) for x in numbers]
    rank = {x: i for i, x in enumerate(sorted(set(numbers)))}
    return [rank[x] for x in numbers]


def _number(text: str) -> float:
    """A metric cell's value; NaN when it is empty, not a number or not finite. ``inf`` is no
    measurement: as a signal it could never be beaten (or, ``-inf``, never become the incumbent), as a
    cost it would end or never charge a budget, so it is read as missing, like an empty cell."""
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def _lines(numbers: Sequence[int], shown: int = 5) -> str:
    """Line numbers for an error: the first few, and how many more."""
    text = ", ".join(str(n) for n in numbers[:shown])
    return text + (f" and {len(numbers) - shown} more" if len(numbers) > shown else "")


def _delimiter_hint(header: Sequence[str]) -> str:
    """A hint for a header read as one column: a table separated by semicolons or tabs (what a
    spreadsheet in a locale with decimal commas writes) is no CSV to ``csv.reader``."""
    if len(header) == 1:
        for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if sep in header[0]:
                return f"; the header has no comma but {name}: the columns must be separated by commas"
    return ""


def load_table(
    path: str | Path,
    signal: str,
    report: str,
    extra: Sequence[tuple[str, str]] = (),
    direction: Direction = "maximize",
    signal_option: str = "--signal",
) -> Table:
    """Read a benchmark CSV; SpecError names a missing column, a table without decisions or rows, and
    a row the table cannot be read from one way only (its line: see the module docstring).

    ``extra`` holds ``(option, column)`` pairs of further columns to read (the option names the
    command-line flag that asked for it, for the error; ``signal_option`` the one that named the
    signal). ``direction``: whether the search maximises or minimises the signal. A byte-order mark
    before the header (spreadsheets write one) is not part of the first column's name, and blank
    lines, or lines of commas only (a spreadsheet's export of empty rows), are no rows."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise SpecError(str(path), "the table is empty")
        body = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    columns = {name: i for i, name in enumerate(header)}
    for option, column in ((signal_option, signal), ("--report", report), *extra):
        if column not in columns:
            hint = _delimiter_hint(header)
            raise SpecError(option, f"{column!r} is not a column of {path} ({', '.join(header)}){hint}")
    xcols = [name for name in header if name.startswith(DECISION_PREFIX)]
    if not xcols:
        raise SpecError(str(path), f"no decision columns: none is named {DECISION_PREFIX}<decision>")
    names = [decision_name(c) for c in xcols]
    if len(set(names)) != len(names):
        raise SpecError(str(path), f"decision columns collide once named: {', '.join(xcols)}")
    if not body:
        raise SpecError(str(path), "the table has no rows, only a header")
    for line, row in body:
        if len(row) != len(header):
            raise SpecError(str(path), f"line {line} has {len(row)} cells, the header {len(header)}")
        for c in xcols:
            if not row[columns[c]].strip():  # not a choice: '' would join the column's choices
                raise SpecError(str(path), f"line {line} has no value in decision column {c!r}")
    typed = [_typed([row[columns[c]] for _, row in body]) for c in xcols]
    decisions = tuple((n, tuple(sorted(set(vals)))) for n, vals in zip(names, typed, strict=True))
    keys = [tuple(vals[k] for vals in typed) for k in range(len(body))]
    first: dict[tuple[Choice, ...], tuple[int, list[str]]] = {}
    for (line, row), key in zip(body, keys, strict=True):
        if key in first:  # two results for one architecture: which one a look-up gets would be arbitrary
            described = " and ".join(
                f"line {n} ({', '.join(f'{c}={cells[columns[c]]}' for c in xcols)})"
                for n, cells in (first[key], (line, row))
            )
            raise SpecError(str(path), f"{described} are the same architecture: a table holds one row per architecture")
        first[key] = (line, row)
    s, r = columns[signal], columns[report]
    rows = {key: (_number(row[s]), _number(row[r])) for (_, row), key in zip(body, keys, strict=True)}
    if all(math.isnan(v) for v, _ in rows.values()):
        raise SpecError(signal_option, f"column {signal!r} holds no finite number: every trial would fail")
    unreported = [
        line for (line, _), (v, x) in zip(body, rows.values(), strict=True) if not math.isnan(v) and math.isnan(x)
    ]
    if unreported:  # such a row could become the incumbent, and its seed drop out of the mean unseen
        raise SpecError(
            "--report",
            f"column {report!r} has no finite number on line {_lines(unreported)}, where {signal!r} has one",
        )
    extras = {
        column: {key: _number(row[columns[column]]) for (_, row), key in zip(body, keys, strict=True)}
        for _, column in extra
    }
    return Table(str(path), signal, report, decisions, rows, extras, direction)


def experiment_spec(
    table: Table,
    strategy: str,
    seed: int,
    trials: int,
    parallel: int,
    settings: dict[str, Any] | None = None,
    early_stopping: EarlyStopping | None = None,
    objectives: Sequence[ObjectiveMetric] = (),
) -> SearchExperimentSpec:
    """The in-memory experiment a benchmark search runs: one categorical decision per ``x_`` column
    (with several ``objectives``, the first of which is the table's signal, a multi-objective one)."""
    strategy_doc: dict[str, Any] = {"name": strategy, "seed": seed}
    if settings:
        strategy_doc[strategy] = SETTINGS_TYPES[strategy].model_validate(settings)
    return SearchExperimentSpec(
        search_space=SearchSpaceSpec(
            hyperparameters=[Decision(name=n, type="categorical", choices=list(c)) for n, c in table.decisions]
        ),
        strategy=StrategySpec.model_validate(strategy_doc),
        objective=Objective(metrics=list(objectives))
        if len(objectives) > 1
        else Objective(metric=table.signal, direction=table.direction),
        budget=Budget(max_trials=trials, parallel_trials=parallel),
        trial_template=TrialTemplate(command=["table-lookup"]),
        early_stopping=early_stopping,
    )


def run_search(table: Table, spec: SearchExperimentSpec) -> list[float]:
    """Run one search; element ``i`` is the incumbent's report value after ``i + 1`` finished trials."""
    return run_costed_search(table, spec, Costs())[0]


def run_costed_search(
    table: Table,
    spec: SearchExperimentSpec,
    costs: Costs,
    on_result: Callable[[Mapping[str, float] | None], None] | None = None,
) -> tuple[list[float], float]:
    """One search under ``costs``: the incumbent's report value after each finished trial, and at the end.

    The benchmark is one more executor of the driver: a created trial joins a first-in, first-out
    queue, and the oldest one is looked up whenever the driver has nothing left to say. Its cheap
    signals go to the driver as :class:`Progress` first; a :class:`Prune` ends it there. Every
    finished trial goes to ``on_result``, in the order of the curve: its full-fidelity metrics (the
    signal and the other objectives' columns), or None for a failed or pruned trial, so that the
    ``b``-th call is the ``b``-th trial whether or not the trials before it had results.
    """
    fidelities = sorted(costs.fidelities, key=lambda f: f.fraction)
    budget = math.inf if costs.budget_seconds is None else costs.budget_seconds
    cost_of = table.extras.get(costs.column, {})
    spent = 0.0
    driver = Driver(spec)
    loop = InProcess(driver, Search(spec))
    names = [n for n, _ in table.decisions]
    others = [o.name for o in spec.objective.objectives() if o.name != table.signal]
    sign = 1.0 if spec.objective.direction == "maximize" else -1.0
    best_signal = -math.inf
    incumbent = math.nan
    curve: list[float] = []
    loop.start()
    while driver.finished is None and loop.created:
        index = loop.created.popleft()
        arch = driver.trial(index).architecture
        key = tuple(arch[n] for n in names)
        signal, report = table.rows.get(key, (math.nan, math.nan))
        full_cost = cost_of.get(key, math.nan) if costs.budget_seconds is not None else 0.0
        lost = None
        if math.isnan(signal):
            lost = TrialLost(index, "NotInTable", "the table has no value for it")
        elif not full_cost >= 0:  # an empty cell (NaN) or a negative cost would unmake the budget
            lost = TrialLost(index, "NoCost", f"the table has no cost ({costs.column}) for it")
        if lost is not None:
            loop.handle(lost)
            curve.append(incumbent)
            if on_result is not None:
                on_result(None)
            continue
        paid, pruned, result = 0.0, False, None
        for fidelity in fidelities:
            cheap = table.extras[fidelity.column].get(key, math.nan)
            if math.isnan(cheap):
                continue
            step_cost = fidelity.fraction * full_cost - paid
            if spent + step_cost > budget:
                return curve, incumbent  # the budget ends before this evaluation
            spent, paid = spent + step_cost, paid + step_cost
            answer = loop.handle(Progress(index, fidelity.step, {table.signal: cheap}))
            if any(isinstance(c, Prune) for c in answer):
                pruned = True
                break
        if not pruned:
            if spent + full_cost - paid > budget:
                return curve, incumbent
            spent += full_cost - paid
            result = {table.signal: signal, **{o: table.extras[o].get(key, math.nan) for o in others}}
            loop.handle(AttemptEnded(index, 1, 0, json.dumps(result)))
            if sign * signal > best_signal:
                best_signal, incumbent = sign * signal, report
        curve.append(incumbent)
        if on_result is not None:
            on_result(result)
    return curve, incumbent


@dataclass(frozen=True)
class Summary:
    """Mean and standard deviation over seeds of the incumbent's report value at each budget."""

    strategy: str
    seeds: int
    budgets: dict[int, tuple[float, float]]
    #: the incumbent's report value when each search ended (at the cost budget, if one was set)
    final: tuple[float, float] = (math.nan, math.nan)
    budget_seconds: float | None = None
    #: with several objectives: the hypervolume's mean and deviation at each budget
    hypervolume: dict[int, tuple[float, float]] | None = None
    #: each seed's value at each budget (seed order), so two runs on the same seeds compare pairwise
    per_seed: dict[int, tuple[float, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "seeds": self.seeds,
            "budgets": {str(b): {"mean": _clean(m), "std": _clean(s)} for b, (m, s) in self.budgets.items()},
            "final": {"mean": _clean(self.final[0]), "std": _clean(self.final[1])},
            "per_seed": {str(b): [_clean(v) for v in values] for b, values in self.per_seed.items()},
        }
        if self.budget_seconds is not None:
            out["budget_seconds"] = self.budget_seconds
        if self.hypervolume is not None:
            volumes = self.hypervolume.items()
            out["hypervolume"] = {str(b): {"mean": _clean(m), "std": _clean(s)} for b, (m, s) in volumes}
        return out


def _clean(x: float) -> float | None:
    """A figure for JSON: null when it is not finite (JSON has no NaN or Infinity)."""
    return round(float(x), 4) if math.isfinite(x) else None


def budgets_for(trials: int) -> list[int]:
    return sorted({b for b in BUDGETS if b <= trials} | {trials})


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation of the values that are not NaN."""
    arr = np.array(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return (float(arr.mean()), float(arr.std())) if len(arr) else (math.nan, math.nan)


def summarize(
    strategy: str,
    curves: Sequence[Sequence[float]],
    trials: int,
    finals: Sequence[float] | None = None,
    budget_seconds: float | None = None,
) -> Summary:
    """Mean and (population) standard deviation over seeds; seeds without an incumbent yet are left out.

    With a cost budget a search may end before ``trials``: a budget of trials it did not reach is
    its value at its end (the incumbent does not change once the budget is spent)."""
    values = {b: tuple(c[min(b, len(c)) - 1] if c else math.nan for c in curves) for b in budgets_for(trials)}
    out = {b: _mean_std(v) for b, v in values.items()}
    final = _mean_std(finals if finals is not None else [c[-1] if c else math.nan for c in curves])
    return Summary(strategy, len(curves), out, final, budget_seconds, per_seed=values)


_WORKER_TABLE: Table | None = None


def _init_worker(table: Table) -> None:
    global _WORKER_TABLE
    _WORKER_TABLE = table
    limit_threads()


SeedWork = tuple[str, int, int, int, dict[str, Any] | None, Costs, EarlyStopping | None, Normaliser | None]
#: one search's incumbent curve, final value and hypervolume at each budget (empty with one objective)
SeedRun = tuple[list[float], float, dict[int, float]]


def _run_seed(args: SeedWork) -> SeedRun:
    assert _WORKER_TABLE is not None
    strategy, seed, trials, parallel, settings, costs, early, normaliser = args
    objectives = normaliser.objectives if normaliser is not None else ()
    spec = experiment_spec(_WORKER_TABLE, strategy, seed, trials, parallel, settings, early, objectives)
    losses: list[tuple[float, ...] | None] = []  # one per finished trial, None without a result

    def on_result(metrics: Mapping[str, float] | None) -> None:
        assert normaliser is not None
        losses.append(None if metrics is None else normaliser.loss(metrics))

    curve, final = run_costed_search(_WORKER_TABLE, spec, costs, None if normaliser is None else on_result)
    volumes: dict[int, float] = {}
    if normaliser is not None:
        for b in budgets_for(trials):  # the results of the first b trials, not the first b results
            volumes[b] = hypervolume([x for x in losses[:b] if x is not None])
    return curve, final, volumes


def limit_threads() -> None:
    """One BLAS thread: the matrices here are small, and extra threads only fight over shared cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    threadpool_limits(1)


def benchmark(
    table: Table,
    strategy: str,
    trials: int,
    seeds: int,
    parallel: int = 1,
    settings: dict[str, Any] | None = None,
    jobs: int = 1,
    costs: Costs | None = None,
    early_stopping: EarlyStopping | None = None,
    normaliser: Normaliser | None = None,
) -> Summary:
    """Run ``seeds`` searches (strategy seeds 0..seeds-1) and summarise them at the report budgets;
    with a ``normaliser`` (several objectives), also their hypervolume."""
    costs = costs or Costs()
    objectives = normaliser.objectives if normaliser is not None else ()
    experiment_spec(table, strategy, 0, trials, parallel, settings, early_stopping, objectives)  # refuse early
    work: list[SeedWork] = [
        (strategy, seed, trials, parallel, settings, costs, early_stopping, normaliser) for seed in range(seeds)
    ]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(table,)) as pool:
            runs = list(pool.map(_run_seed, work))
    else:
        _init_worker(table)
        runs = [_run_seed(w) for w in work]
    summary = summarize(strategy, [c for c, _, _ in runs], trials, [f for _, f, _ in runs], costs.budget_seconds)
    if normaliser is None:
        return summary
    volumes = {b: _mean_std([v[b] for _, _, v in runs]) for b in budgets_for(trials)}
    return replace(summary, hypervolume=volumes)

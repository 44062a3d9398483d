"""The tabular NAS benchmark: a search whose trials look their architecture up in a table.

A table is a CSV file in which every column named ``x_<decision>`` is one categorical decision (its
choices are the distinct values of the column) and the other columns are metrics of the row's
architecture. A search runs through the same :class:`~kubenas.core.search.Search` and engine as a
real experiment; only the trial is replaced by a look-up, completed in ask order (first in, first
out) with ``parallel`` trials outstanding, so ``parallel - 1`` asks are always ahead of rewards.

Protocol (NAS-Bench-201 paper): the strategy searches on ``signal``; after every finished trial the
incumbent is the best-by-signal architecture so far and the benchmark records its ``report`` value.
Architectures missing from the table, and rows whose signal is empty or not a number, are failed
trials: the table says the candidate cannot be trained.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kubenas.api.space import Decision, SearchSpaceSpec
from kubenas.api.strategy import SETTINGS_TYPES, StrategySpec
from kubenas.api.v1alpha1 import Budget, Objective, SearchExperimentSpec, TrialTemplate
from kubenas.core.driver import AskFor, AttemptEnded, Command, Create, Driver, ResultStored, Store, Tell, TrialLost
from kubenas.core.errors import SpecError
from kubenas.core.search import Search

DECISION_PREFIX = "x_"
#: trial counts at which the incumbent is reported (and the full budget, whatever it is)
BUDGETS = (50, 100, 150, 300)

Choice = str | int | float


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


def decision_name(column: str) -> str:
    """The decision name of an ``x_`` column, made a valid Kubernetes-style decision name."""
    name = re.sub(r"[^a-z0-9_]", "_", column[len(DECISION_PREFIX) :].lower())
    if not name or not name[0].isalpha():
        name = f"d_{name}"
    return name[:63]


def _typed(values: Sequence[str]) -> list[Choice]:
    """Column values as ints, else floats, else strings (so numeric choices sort numerically)."""
    for kind in (int, float):
        try:
            return [kind(v) for v in values]
        except ValueError:
            continue
    return list(values)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def load_table(path: str | Path, signal: str, report: str) -> Table:
    """Read a benchmark CSV; SpecError names a missing column or a table without decisions."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise SpecError(str(path), "the table is empty")
        body = [row for row in reader if row]
    columns = {name: i for i, name in enumerate(header)}
    for option, column in (("--signal", signal), ("--report", report)):
        if column not in columns:
            raise SpecError(option, f"{column!r} is not a column of {path} ({', '.join(header)})")
    xcols = [name for name in header if name.startswith(DECISION_PREFIX)]
    if not xcols:
        raise SpecError(str(path), f"no decision columns: none is named {DECISION_PREFIX}<decision>")
    names = [decision_name(c) for c in xcols]
    if len(set(names)) != len(names):
        raise SpecError(str(path), f"decision columns collide once named: {', '.join(xcols)}")
    typed = [_typed([row[columns[c]] for row in body]) for c in xcols]
    decisions = tuple((n, tuple(sorted(set(vals)))) for n, vals in zip(names, typed, strict=True))
    rows: dict[tuple[Choice, ...], tuple[float, float]] = {}
    s, r = columns[signal], columns[report]
    for k, row in enumerate(body):
        key = tuple(vals[k] for vals in typed)
        rows[key] = (_number(row[s]), _number(row[r]))
    return Table(str(path), signal, report, decisions, rows)


def experiment_spec(
    table: Table, strategy: str, seed: int, trials: int, parallel: int, settings: dict[str, Any] | None = None
) -> SearchExperimentSpec:
    """The in-memory experiment a benchmark search runs: one categorical decision per ``x_`` column."""
    strategy_doc: dict[str, Any] = {"name": strategy, "seed": seed}
    if settings:
        strategy_doc[strategy] = SETTINGS_TYPES[strategy].model_validate(settings)
    return SearchExperimentSpec(
        search_space=SearchSpaceSpec(
            hyperparameters=[Decision(name=n, type="categorical", choices=list(c)) for n, c in table.decisions]
        ),
        strategy=StrategySpec.model_validate(strategy_doc),
        objective=Objective(metric=table.signal, direction="maximize"),
        budget=Budget(max_trials=trials, parallel_trials=parallel),
        trial_template=TrialTemplate(command=["table-lookup"]),
    )


def run_search(table: Table, spec: SearchExperimentSpec) -> list[float]:
    """Run one search; element ``i`` is the incumbent's report value after ``i + 1`` finished trials.

    The benchmark is one more executor of the driver: a created trial joins a first-in, first-out
    queue, and the oldest one is looked up whenever the driver has nothing left to say.
    """
    search = Search(spec)
    driver = Driver(spec)
    names = [n for n, _ in table.decisions]
    outstanding: deque[int] = deque()
    best_signal = -math.inf
    incumbent = math.nan
    curve: list[float] = []
    commands: deque[Command] = deque(driver.start())
    while True:
        while commands:
            command = commands.popleft()
            if isinstance(command, (AskFor, Tell)):
                answer = search.serve(command)
                if answer is not None:
                    commands.extend(driver.handle(answer))
            elif isinstance(command, Create):
                outstanding.append(command.trial.index)
            elif isinstance(command, Store):
                commands.extend(driver.handle(ResultStored(command.trial.index)))
        if driver.finished is not None or not outstanding:
            break
        index = outstanding.popleft()
        arch = driver.trial(index).architecture
        signal, report = table.rows.get(tuple(arch[n] for n in names), (math.nan, math.nan))
        if math.isnan(signal):
            event: AttemptEnded | TrialLost = TrialLost(index, "NotInTable", "the table has no value for it")
        else:
            event = AttemptEnded(index, 1, 0, json.dumps({table.signal: signal}))
            if signal > best_signal:
                best_signal, incumbent = signal, report
        commands.extend(driver.handle(event))
        curve.append(incumbent)
    return curve


@dataclass(frozen=True)
class Summary:
    """Mean and standard deviation over seeds of the incumbent's report value at each budget."""

    strategy: str
    seeds: int
    budgets: dict[int, tuple[float, float]]

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "seeds": self.seeds,
            "budgets": {str(b): {"mean": _clean(m), "std": _clean(s)} for b, (m, s) in self.budgets.items()},
        }


def _clean(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 4)


def budgets_for(trials: int) -> list[int]:
    return sorted({b for b in BUDGETS if b <= trials} | {trials})


def summarize(strategy: str, curves: Sequence[Sequence[float]], trials: int) -> Summary:
    """Mean and (population) standard deviation over seeds; seeds without an incumbent yet are left out."""
    out: dict[int, tuple[float, float]] = {}
    for b in budgets_for(trials):
        values = np.array([c[min(b, len(c)) - 1] if c else math.nan for c in curves], dtype=np.float64)
        values = values[~np.isnan(values)]
        out[b] = (float(values.mean()), float(values.std())) if len(values) else (math.nan, math.nan)
    return Summary(strategy, len(curves), out)


_WORKER_TABLE: Table | None = None


def _init_worker(table: Table) -> None:
    global _WORKER_TABLE
    _WORKER_TABLE = table
    limit_threads()


def _run_seed(args: tuple[str, int, int, int, dict[str, Any] | None]) -> list[float]:
    assert _WORKER_TABLE is not None
    strategy, seed, trials, parallel, settings = args
    return run_search(_WORKER_TABLE, experiment_spec(_WORKER_TABLE, strategy, seed, trials, parallel, settings))


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
) -> Summary:
    """Run ``seeds`` searches (strategy seeds 0..seeds-1) and summarise them at the report budgets."""
    experiment_spec(table, strategy, 0, trials, parallel, settings)  # refuse a bad spec before forking
    work = [(strategy, seed, trials, parallel, settings) for seed in range(seeds)]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(table,)) as pool:
            curves = list(pool.map(_run_seed, work))
    else:
        _init_worker(table)
        curves = [_run_seed(w) for w in work]
    return summarize(strategy, curves, trials)

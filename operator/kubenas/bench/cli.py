"""``kubenas bench search ...``: the tabular benchmark."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import typer
import yaml

from kubenas.api.strategy import STRATEGY_NAMES
from kubenas.bench.augment import command as augment_command
from kubenas.bench.oneshot import command as oneshot_command


def _settings(pairs: list[str]) -> dict[str, Any] | None:
    """``KEY=VALUE`` pairs as strategy settings; values are read as YAML scalars (10, 0.5, true, rank)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--set")
        out[key.strip()] = yaml.safe_load(value)
    return out or None


def search(
    table: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="CSV: x_<decision> columns and metric columns."
    ),
    signal: str | None = typer.Option(
        None,
        "--signal",
        help="Column the strategy searches on (larger is better); default: the first --objective"
        " (one --objective COLUMN:min searches for the smallest).",
    ),
    report: str = typer.Option(..., "--report", help="Column reported for the incumbent (never searched on)."),
    strategy: str = typer.Option(..., "--strategy", help=f"One of {', '.join(STRATEGY_NAMES)}."),
    trials: int = typer.Option(300, "--trials", min=1, help="Trials per search."),
    seeds: int = typer.Option(30, "--seeds", min=1, help="Searches, with strategy seeds 0..seeds-1."),
    parallel: int = typer.Option(1, "--parallel", min=1, help="Trials outstanding: parallel-1 asks ahead of rewards."),
    json_out: Path | None = typer.Option(None, "--json", dir_okay=False, help="Also write the summary as JSON here."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes over seeds."),
    settings: list[str] = typer.Option(
        [], "--set", help="A strategy setting, KEY=VALUE (repeatable), e.g. --set population_size=10."
    ),
    budget_seconds: float | None = typer.Option(
        None, "--budget-seconds", help="Simulated training seconds per search (the --cost column summed), above 0."
    ),
    cost: str = typer.Option("train_time_s", "--cost", help="Column: seconds of one full training."),
    fidelity: list[str] = typer.Option(
        [],
        "--fidelity",
        help="A cheap signal, COLUMN:FRACTION of the full cost (repeatable), e.g. val_acc_12ep:0.06.",
    ),
    early_stopping: str | None = typer.Option(
        None, "--early-stopping", help="Stopping rule on the cheap signals: median, asha or hyperband."
    ),
    reduction_factor: int = typer.Option(3, "--reduction-factor", min=2, help="asha, hyperband: keep 1/N per rung."),
    objective: list[str] = typer.Option(
        [],
        "--objective",
        help="An objective, COLUMN:max or COLUMN:min (repeatable; two or more search a Pareto front and"
        " report its hypervolume), e.g. --objective val_acc:max --objective params_mb:min.",
    ),
) -> None:
    """Search a tabular NAS benchmark and report the incumbent after 50, 100, 150, 300 and all trials,
    and at the end of the search (``final``; with --budget-seconds, when the simulated time runs out).
    With several --objective columns, also the hypervolume of the trials evaluated by each count."""
    from pydantic import ValidationError

    from kubenas.api.early_stopping import EarlyStopping
    from kubenas.bench.hypervolume import Normaliser, parse_objective, table_hypervolume
    from kubenas.bench.tabular import FULL_STEP, Costs, benchmark, limit_threads, load_table, parse_fidelity
    from kubenas.core.errors import SpecError

    if strategy not in STRATEGY_NAMES:
        raise typer.BadParameter(f"{strategy!r} is not one of {', '.join(STRATEGY_NAMES)}", param_hint="--strategy")
    if parallel > trials:
        raise typer.BadParameter("must not exceed --trials", param_hint="--parallel")
    if budget_seconds is not None and not (math.isfinite(budget_seconds) and budget_seconds > 0):
        # 0 is no budget to search in (not "no budget": leave the option out for that)
        raise typer.BadParameter(f"{budget_seconds} is not a number of seconds above 0", param_hint="--budget-seconds")
    limit_threads()
    try:
        fidelities = tuple(parse_fidelity(f) for f in fidelity)
        costs = Costs(budget_seconds, cost, fidelities)
        extra = [("--fidelity", f.column) for f in fidelities]
        if budget_seconds is not None:
            extra.append(("--cost", cost))
        rule = None
        if early_stopping is not None:
            if not fidelities:
                raise SpecError("--early-stopping", "a stopping rule needs a cheap signal to judge: give --fidelity")
            first = min(f.step for f in fidelities)
            rule = EarlyStopping.model_validate(
                {"rule": early_stopping, "minResource": first, "maxResource": FULL_STEP}
                | {"reductionFactor": reduction_factor, "startupTrials": 5}
            )
        objectives = [parse_objective(o) for o in objective]
        if signal is None and not objectives:
            raise SpecError("--signal", "give the column to search on (--signal), or --objective")
        if objectives and signal not in (None, objectives[0].name):
            raise SpecError("--signal", f"with --objective the signal is the first objective, {objectives[0].name}")
        signal = signal or objectives[0].name
        direction = objectives[0].direction if objectives else "maximize"
        multi = objectives if len(objectives) > 1 else []
        extra += [("--objective", o.name) for o in multi[1:]]
        data = load_table(table, signal, report, extra, direction, "--objective" if objectives else "--signal")
        normaliser = None
        if multi:
            columns = {signal: [v for v, _ in data.rows.values()]}
            columns |= {c: list(values.values()) for c, values in data.extras.items()}
            normaliser = Normaliser.of_columns(multi, columns)
        started = time.perf_counter()
        summary = benchmark(data, strategy, trials, seeds, parallel, _settings(settings), jobs, costs, rule, normaliser)
    except SpecError as exc:
        raise typer.BadParameter(exc.message, param_hint=exc.field) from None
    except ValidationError as exc:  # settings given with --set, or a column name the API refuses
        raise typer.BadParameter(str(exc)) from None
    seconds = time.perf_counter() - started
    typer.echo(f"{strategy}: {seeds} seeds x {trials} trials, parallel {parallel}, {seconds:.1f} s")
    typer.echo(f"{'trials':>8}  {'mean ' + report:>16}  {'std':>6}")
    for b, (mean, std) in summary.budgets.items():
        typer.echo(f"{b:>8}  {mean:>16.2f}  {std:>6.2f}")
    typer.echo(f"{'final':>8}  {summary.final[0]:>16.2f}  {summary.final[1]:>6.2f}")
    out = summary.to_json()
    if normaliser is not None and summary.hypervolume is not None:
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        best = table_hypervolume(normaliser, rows)
        out["objectives"] = [f"{o.name}:{o.direction[:3]}" for o in normaliser.objectives]
        out["table_hypervolume"] = round(best, 4)
        typer.echo(f"{'trials':>8}  {'mean hypervolume':>16}  {'std':>6}   (whole table: {best:.4f})")
        for b, (mean, std) in summary.hypervolume.items():
            typer.echo(f"{b:>8}  {mean:>16.4f}  {std:>6.4f}")
    if json_out is not None:
        json_out.write_text(json.dumps(out, indent=2, allow_nan=False) + "\n")  # strict JSON: null, never NaN


def nk_table(
    out: Path = typer.Argument(..., dir_okay=False, help="CSV file to write."),
    choices: str = typer.Option("4,4,3,5,4,3,4", "--choices", help="Choices of each decision, comma-separated."),
    interactions: int = typer.Option(2, "--interactions", min=0, help="Other decisions each contribution depends on."),
    noise: float = typer.Option(0.01, "--noise", min=0.0, help="Signal noise, as a fraction of the value range."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the landscape."),
) -> None:
    """Write a synthetic NK-landscape table (columns x_d0.., signal, report) to check strategies off NAS-Bench-201."""
    from kubenas.bench.synthetic import nk_table as write

    try:
        sizes = [int(c) for c in choices.split(",")]
    except ValueError:
        raise typer.BadParameter("must be integers separated by commas", param_hint="--choices") from None
    if not sizes or min(sizes) < 1:
        raise typer.BadParameter("every decision needs at least one choice", param_hint="--choices")
    write(out, sizes, interactions, noise, seed)
    typer.echo(f"wrote {out}")


def nk_suite(
    directory: Path = typer.Argument(..., file_okay=False, help="Folder to write the tables into."),
) -> None:
    """Write the generated table shapes strategies are checked on (kubenas.bench.synthetic.SUITE)."""
    from kubenas.bench.synthetic import write_suite

    for path in write_suite(directory):
        typer.echo(f"wrote {path}")


def ask_cost(
    table: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV: x_<decision> columns and metrics."),
    signal: str = typer.Option(..., "--signal", help="Column told as the reward."),
    strategy: str = typer.Option("progressive", "--strategy", help=f"One of {', '.join(STRATEGY_NAMES)}."),
    history: int = typer.Option(1000, "--history", min=0, help="Trials told before the timed asks."),
    asks: int = typer.Option(200, "--asks", min=1, help="Asks timed (each then told)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Strategy seed."),
    settings: list[str] = typer.Option([], "--set", help="A strategy setting, KEY=VALUE (repeatable)."),
) -> None:
    """Time asks with a long history; prints JSON (p50, p99 and max milliseconds per ask)."""
    from kubenas.bench.askcost import ask_cost as measure
    from kubenas.bench.tabular import limit_threads, load_table
    from kubenas.core.errors import SpecError

    if strategy not in STRATEGY_NAMES:
        raise typer.BadParameter(f"{strategy!r} is not one of {', '.join(STRATEGY_NAMES)}", param_hint="--strategy")
    limit_threads()
    try:
        figures = measure(load_table(table, signal, signal), strategy, history, asks, seed, _settings(settings))
    except SpecError as exc:
        raise typer.BadParameter(exc.message, param_hint=exc.field) from None
    typer.echo(json.dumps(figures, allow_nan=False))


def register(bench_app: typer.Typer) -> None:
    """Add the tabular, augmentation and one-shot benchmark commands to ``kubenas bench``."""
    bench_app.command("search")(search)
    bench_app.command("nk-table")(nk_table)
    bench_app.command("nk-suite")(nk_suite)
    bench_app.command("ask-cost")(ask_cost)
    bench_app.command("augment")(augment_command)
    bench_app.command("oneshot")(oneshot_command)

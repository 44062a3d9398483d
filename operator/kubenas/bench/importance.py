"""``kubenas bench importance TABLE.csv``: is decision importance stable, and is it right?

Each seed draws ``trials`` architectures of the table uniformly without repetition (the history a
random search leaves), computes the importance of every decision from those trials alone, and ranks
the decisions. The reference is the table itself, fully enumerated: the exact share of the signal's
variance that each decision explains on its own (first-order functional ANOVA). The command prints
JSON: the Spearman rank correlation of every seed's ranking with the reference, and between seeds.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer

from kubenas.insights.importance import EVALUATORS


def sampled_records(table: Any, trials: int, seed: int) -> list[Any]:
    """``trials`` rows of the table drawn without repetition, as succeeded (or, without a signal, failed) trials."""
    from kubenas.core.records import TrialRecord

    names = [n for n, _ in table.decisions]
    keys = list(table.rows)
    picks = np.random.default_rng(seed).choice(len(keys), size=min(trials, len(keys)), replace=False)
    out = []
    for i, p in enumerate(picks):
        signal = table.rows[keys[p]][0]
        ok = not math.isnan(signal)
        arch = dict(zip(names, keys[p], strict=True))
        out.append(TrialRecord(i, arch, phase="Succeeded" if ok else "Failed", reward=signal if ok else None))
    return out


def run(table_path: Path, signal: str, trials: int, seeds: int, evaluator: str) -> dict[str, Any]:
    """The benchmark's JSON result."""
    from scipy.stats import spearmanr

    from kubenas.bench.tabular import load_table
    from kubenas.core.space import Categorical, SearchSpace
    from kubenas.insights.importance import importance, variance_explained

    table = load_table(table_path, signal, signal)
    names = [n for n, _ in table.decisions]
    space = SearchSpace(tuple(Categorical(n, c) for n, c in table.decisions))
    rows = [(dict(zip(names, k, strict=True)), v[0]) for k, v in table.rows.items() if not math.isnan(v[0])]
    exact = variance_explained(names, rows)
    started = time.perf_counter()
    per_seed = []
    for seed in range(seeds):
        scores = dict(importance(space, sampled_records(table, trials, seed), evaluator, seed=seed).scores)  # type: ignore[arg-type]
        vector = [scores.get(n, 0.0) for n in names]
        per_seed.append(
            {
                "seed": seed,
                "ranking": sorted(names, key=lambda n: -scores.get(n, 0.0)),
                "spearman_vs_exact": round(float(spearmanr(vector, [exact[n] for n in names]).statistic), 4),
                "_vector": vector,
            }
        )
    between = [float(spearmanr(a["_vector"], b["_vector"]).statistic) for a, b in itertools.combinations(per_seed, 2)]
    vs_exact = [s["spearman_vs_exact"] for s in per_seed]
    exact_ranking = sorted(names, key=lambda n: -exact[n])
    for s in per_seed:
        del s["_vector"]
    return {
        "table": table_path.name,
        "signal": signal,
        "rows": len(rows),
        "trials": trials,
        "seeds": seeds,
        "evaluator": evaluator,
        "exact_variance_share": {n: round(exact[n], 4) for n in exact_ranking},
        "exact_ranking": exact_ranking,
        "spearman_vs_exact": {"mean": round(float(np.mean(vs_exact)), 4), "min": round(float(np.min(vs_exact)), 4)},
        "spearman_between_seeds": (
            {"mean": round(float(np.mean(between)), 4), "min": round(float(np.min(between)), 4)} if between else None
        ),
        "top_decision_agreement": round(sum(s["ranking"][0] == exact_ranking[0] for s in per_seed) / seeds, 4),
        "seconds_per_seed": round((time.perf_counter() - started) / seeds, 3),
        "per_seed": per_seed,
    }


def importance_command(
    table: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV: x_<decision> columns and metrics."),
    signal: str = typer.Option(..., "--signal", help="Column whose importance is measured (e.g. val_acc)."),
    trials: int = typer.Option(300, "--trials", min=10, help="Trials drawn per seed."),
    seeds: int = typer.Option(10, "--seeds", min=1, help="Independent draws (seeds 0..seeds-1)."),
    evaluator: str = typer.Option("ped-anova", "--evaluator", help=f"One of {', '.join(EVALUATORS)}."),
) -> None:
    """Print JSON: how stable the importance ranking is across seeds and how it agrees with the full table."""
    from kubenas.core.errors import SpecError

    if evaluator not in EVALUATORS:
        raise typer.BadParameter(f"{evaluator!r} is not one of {', '.join(EVALUATORS)}", param_hint="--evaluator")
    try:
        result = run(table, signal, trials, seeds, evaluator)
    except SpecError as exc:
        raise typer.BadParameter(exc.message, param_hint=exc.field) from None
    typer.echo(json.dumps(result, indent=2))


def register(bench_app: typer.Typer) -> None:
    """Add ``kubenas bench importance`` to ``kubenas bench``."""
    bench_app.command("importance")(importance_command)

"""The results folder: summary.json, trials.json, trials.csv, plots and the printed leaderboard."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kubenas.api.v1alpha1 import Objective
from kubenas.core.records import TrialRecord, best_of, objective_value


def _value(objective: Objective, rec: TrialRecord) -> float | None:
    return None if rec.reward is None else objective_value(objective, rec.reward)


def summary(name: str, objective: Objective, trials: list[TrialRecord], phase: str, reason: str) -> dict[str, Any]:
    best = best_of(trials)
    return {
        "experiment": name,
        "phase": phase,
        "reason": reason,
        "objective": objective.to_wire(),
        "trials": len(trials),
        "succeeded": sum(t.phase == "Succeeded" for t in trials),
        "failed": sum(t.phase == "Failed" for t in trials),
        "infeasible": sum(t.phase == "Infeasible" for t in trials),
        "best": None
        if best is None
        else {
            "trial": best.name,
            "index": best.index,
            "architecture": best.architecture,
            "metrics": dict(best.metrics),
            "value": _value(objective, best),
        },
    }


def write_results(directory: Path, summ: dict[str, Any], objective: Objective, trials: list[TrialRecord]) -> None:
    (directory / "summary.json").write_text(json.dumps(summ, indent=2) + "\n")
    rows = [
        {
            "trial": t.name,
            "index": t.index,
            "phase": t.phase,
            "reason": t.reason,
            "value": _value(objective, t),
            "architecture": t.architecture,
            "metrics": dict(t.metrics),
        }
        for t in trials
    ]
    (directory / "trials.json").write_text(json.dumps(rows, indent=2) + "\n")
    metric_names = sorted({k for t in trials for k in t.metrics})
    arch_names = list(trials[0].architecture) if trials else []
    with (directory / "trials.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trial", "index", "phase", "reason", objective.metric + "_objective", *arch_names, *metric_names])
        for t in trials:
            w.writerow(
                [t.name, t.index, t.phase, t.reason or "", _value(objective, t)]
                + [t.architecture.get(a) for a in arch_names]
                + [t.metrics.get(m, "") for m in metric_names]
            )
    _plot(directory, objective, trials)


def _plot(directory: Path, objective: Objective, trials: list[TrialRecord]) -> None:
    """reward.png: each trial's objective in the order it was proposed, and the best so far."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are a convenience; the JSON and CSV carry the data
        return
    xs, ys, best_x, best_y = [], [], [], []
    best: float | None = None
    better = (lambda a, b: a > b) if objective.direction == "maximize" else (lambda a, b: a < b)
    for t in sorted(trials, key=lambda r: r.index):
        v = _value(objective, t) if t.phase == "Succeeded" else None
        if v is None:
            continue
        xs.append(t.index)
        ys.append(v)
        if best is None or better(v, best):
            best = v
        best_x.append(t.index)
        best_y.append(best)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.scatter(xs, ys, s=14, alpha=0.6, label="trial")
    ax.step(best_x, best_y, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial (order proposed)")
    ax.set_ylabel(objective.metric)
    ax.set_title(f"{objective.metric} per trial ({objective.direction})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if objective.direction == "maximize" else "upper right")
    fig.tight_layout()
    fig.savefig(directory / "reward.png")
    plt.close(fig)


def leaderboard(console: Console, objective: Objective, trials: list[TrialRecord], top: int = 10) -> None:
    ranked = sorted(
        (t for t in trials if t.phase == "Succeeded" and t.reward is not None),
        key=lambda t: (-(t.reward or 0.0), t.index),
    )[:top]
    table = Table(title=f"Leaderboard ({objective.metric}, {objective.direction})")
    table.add_column("#", justify="right")
    table.add_column("trial")
    table.add_column(objective.metric, justify="right")
    names = list(ranked[0].architecture) if ranked else []
    shown = " ".join(names) if len(names) <= 4 else f"{names[0]} … {names[-1]}"
    table.add_column(f"architecture ({shown})", overflow="fold")
    for i, t in enumerate(ranked, 1):
        arch = " ".join(str(v) for v in t.architecture.values())
        table.add_row(str(i), t.name, f"{_value(objective, t):.4g}", arch)
    console.print(table)

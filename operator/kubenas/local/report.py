"""The results folder: summary.json, trials.json, trials.csv, plots and the printed leaderboard.

Besides the raw history it holds what the search learned (``kubenas.insights``): decision importance
(summary.json ``importance``, importance.png), motifs of the top architectures (summary.json
``motifs``, motifs.csv) and pictures of the best architecture (best.png) and of the top ones
(top.png). With several objectives, summary.json ``pareto`` holds the Pareto front and pareto.png
draws it (``kubenas.local.front``); ``best`` is then the front's best trial on the first objective.
``gpuHours`` is the GPU time the trials used. Pictures need matplotlib; without it the JSON and CSV
still carry every figure.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from kubenas.api.v1alpha1 import Objective
from kubenas.core.errors import SpecError
from kubenas.core.records import TrialRecord, best_of, objective_value
from kubenas.core.space import SearchSpace, build_space
from kubenas.insights import pictures, tables
from kubenas.insights.genotype import genotype
from kubenas.insights.importance import NotEnoughTrials, importance
from kubenas.insights.motifs import motifs, top_trials
from kubenas.local.curves import curve_wire, save_curves
from kubenas.local.front import front_json, save_pareto

#: architectures drawn side by side in top.png and counted as "the top" in motifs
TOP_K = 5


def _value(objective: Objective, rec: TrialRecord) -> float | None:
    return None if rec.reward is None else objective_value(objective, rec.reward)


def summary(name: str, objective: Objective, trials: list[TrialRecord], phase: str, reason: str) -> dict[str, Any]:
    best = best_of(trials)
    extra: dict[str, Any] = {}
    if objective.multi:
        extra["pareto"] = front_json(objective, trials)
    gpu_seconds = sum(t.gpu_seconds or 0.0 for t in trials)
    if gpu_seconds:
        extra["gpuHours"] = round(gpu_seconds / 3600, 6)
    return {
        "experiment": name,
        "phase": phase,
        "reason": reason,
        "objective": objective.to_wire(),
        "trials": len(trials),
        "succeeded": sum(t.phase == "Succeeded" for t in trials),
        "failed": sum(t.phase == "Failed" for t in trials),
        "infeasible": sum(t.phase == "Infeasible" for t in trials),
        "pruned": sum(t.phase == "Pruned" for t in trials),
        "best": None
        if best is None
        else {
            "trial": best.name,
            "index": best.index,
            "architecture": best.architecture,
            "genotype": genotype(best.architecture),
            "metrics": dict(best.metrics),
            "artifacts": f"trials/{best.name}/output",  # model.pt, architecture.json, metrics.jsonl
            "value": _value(objective, best),
        },
        **extra,
    }


def _space(directory: Path, given: SearchSpace | None) -> SearchSpace | None:
    """The search space: the one given, else the one of the experiment recorded in the folder."""
    if given is not None:
        return given
    from kubenas.load import load_experiment

    try:
        return build_space(load_experiment(directory / "experiment.yaml").spec.search_space)
    except (SpecError, OSError):
        return None


def learned(
    directory: Path, objective: Objective, trials: list[TrialRecord], space: SearchSpace | None, top_k: int = TOP_K
) -> dict[str, Any]:
    """Importance and motifs for summary.json, and their pictures and table written into ``directory``."""
    out: dict[str, Any] = {}
    sign = tables.sign(objective)
    if space is not None:
        try:
            imp = importance(space, trials)
        except NotEnoughTrials as exc:
            out["importance"] = {"unavailable": str(exc)}
        else:
            out["importance"] = imp.to_json(sign)
            pictures.save_importance(directory / "importance.png", imp, objective.metric, sign)
    found = motifs(trials, top_k)
    if found is not None:
        out["motifs"] = found.to_json()
        with (directory / "motifs.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["decision", "operation", f"top_{found.k}_share", "all_share"])
            w.writerows([s.decision, s.operation, round(s.top, 4), round(s.overall, 4)] for s in found.shares)
    top = top_trials(trials, top_k)
    if top:
        best = top[0]
        value = objective_value(objective, best.reward or 0.0)
        pictures.save_architecture(
            directory / "best.png", best.architecture, f"{best.name}: {objective.metric} {value:.4g}"
        )
        pictures.save_gallery(
            directory / "top.png",
            [
                (f"#{i} {t.name}: {objective_value(objective, t.reward or 0.0):.4g}", t.architecture)
                for i, t in enumerate(top, 1)
            ],
        )
    return out


def write_results(
    directory: Path,
    summ: dict[str, Any],
    objective: Objective,
    trials: list[TrialRecord],
    space: SearchSpace | None = None,
) -> None:
    """Write the results folder; ``space`` defaults to the space of the folder's experiment.yaml."""
    summ = {**summ, **learned(directory, objective, trials, _space(directory, space))}
    (directory / "summary.json").write_text(json.dumps(summ, indent=2) + "\n")
    names = {t.index: t.name for t in trials}
    rows = [
        {
            "trial": t.name,
            "index": t.index,
            "parents": [names.get(p, str(p)) for p in t.parents],
            "phase": t.phase,
            "reason": t.reason,
            "message": t.message,
            "value": _value(objective, t),
            "architecture": t.architecture,
            "metrics": dict(t.metrics),
            "curve": curve_wire(t),
        }
        for t in trials
    ]
    (directory / "trials.json").write_text(json.dumps(rows, indent=2) + "\n")
    metric_names = sorted({k for t in trials for k in t.metrics})
    arch_names = list(trials[0].architecture) if trials else []
    with (directory / "trials.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        header = ["trial", "index", "parents", "phase", "reason", "message", objective.metric + "_objective"]
        w.writerow([*header, *arch_names, *metric_names])
        for t in trials:
            parents = " ".join(names.get(p, str(p)) for p in t.parents)
            w.writerow(
                [t.name, t.index, parents, t.phase, t.reason or "", t.message or "", _value(objective, t)]
                + [t.architecture.get(a) for a in arch_names]
                + [t.metrics.get(m, "") for m in metric_names]
            )
    _plot(directory, objective, trials)
    save_curves(directory / "curves.png", objective, trials)
    if objective.multi:
        save_pareto(directory / "pareto.png", objective, trials)


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
    """Print the leaderboard and the motifs of the top trials (or say that no trial succeeded)."""
    table = tables.leaderboard(objective, trials, top)
    if table is None:
        console.print(f"No trial succeeded: no leaderboard ({len(trials)} trials, see trials.csv for their reasons)")
        return
    console.print(table)
    found = motifs(trials, TOP_K)
    if found is not None:
        console.print(tables.motifs_table(found))

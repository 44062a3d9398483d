"""The Pareto front of a multi-objective run in the results folder: summary.json ``pareto`` and pareto.png.

The front is the core's (:class:`kubenas.core.pareto.Front`, the same one the operator shows in
status); here it is written out, bounded to :data:`kubenas.api.v1alpha1.MAX_FRONT` trials like the
status, and drawn over every succeeded trial for the first two objectives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubenas.api.v1alpha1 import MAX_FRONT, Objective
from kubenas.core.pareto import Front, objective_values
from kubenas.core.records import TrialRecord
from kubenas.insights import pictures


def front_json(objective: Objective, trials: list[TrialRecord]) -> dict[str, Any]:
    """summary.json's ``pareto``: the objectives, the front's size and its trials (at most MAX_FRONT)."""
    objectives = objective.objectives()
    front = Front(objectives, trials)
    shown = front.bounded(MAX_FRONT)
    entries = [
        {
            "trial": t.name,
            "index": t.index,
            "values": objective_values(objectives, t.metrics),
            "architecture": t.architecture,
        }
        for t in shown
    ]
    return {
        "objectives": [o.to_wire() for o in objectives],
        "size": len(front),
        "trials": entries,
    }


def save_pareto(path: Path, objective: Objective, trials: list[TrialRecord]) -> bool:
    """Draw pareto.png (first two objectives); False without matplotlib or without a succeeded trial."""
    first, second = objective.objectives()[:2]
    points = [
        (t.metrics[first.name], t.metrics[second.name])
        for t in trials
        if t.phase == "Succeeded" and first.name in t.metrics and second.name in t.metrics
    ]
    if not points:
        return False
    plt = pictures.pyplot()
    if plt is None:  # pictures are a convenience; summary.json carries the front
        return False
    front = sorted(
        (t.metrics[first.name], t.metrics[second.name]) for t in Front(objective.objectives(), trials).members()
    )
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=12, alpha=0.4, color="0.5", label="trial")
    ax.plot([p[0] for p in front], [p[1] for p in front], "o-", color="C3", ms=5, label=f"front ({len(front)})")
    ax.set_xlabel(f"{first.name} ({first.direction})")
    ax.set_ylabel(f"{second.name} ({second.direction})")
    ax.set_title(f"Pareto front: {len(points)} succeeded trials")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True

"""curves.png: every trial's learning curve (the objective metric step by step), pruned ones apart.

The curves are the ones the driver kept in each record (bounded, see
:data:`kubenas.api.v1alpha1.MAX_CURVE_POINTS`), so the picture shows what the stopping rule judged.
"""

from __future__ import annotations

from pathlib import Path

from kubenas.api.v1alpha1 import Objective
from kubenas.core.records import TrialRecord


def curve_wire(rec: TrialRecord) -> list[list[float]]:
    """``[[step, value], ...]``: a record's curve as trials.json carries it."""
    return [[step, value] for step, value in rec.curve]


def save_curves(path: Path, objective: Objective, trials: list[TrialRecord]) -> bool:
    """Draw curves.png; False (nothing written) without matplotlib or without a curve of two points."""
    drawn = [t for t in trials if len(t.curve) >= 2]
    if not drawn:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pictures are a convenience; trials.json carries every curve
        return False
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    styles = {
        "Pruned": {"color": "C3", "alpha": 0.5, "lw": 0.8},
        "Succeeded": {"color": "C0", "alpha": 0.7, "lw": 1.0},
    }
    labelled: set[str] = set()
    for t in drawn:
        style = styles.get(t.phase, {"color": "0.6", "alpha": 0.5, "lw": 0.8})
        label = t.phase if t.phase not in labelled else None
        labelled.add(t.phase)
        ax.plot([s for s, _ in t.curve], [v for _, v in t.curve], label=label, **style)  # type: ignore[arg-type]
    ax.set_xlabel("step (epoch)")
    ax.set_ylabel(objective.metric)
    ax.set_title(f"learning curves: {len(drawn)} trials, {sum(t.phase == 'Pruned' for t in drawn)} pruned")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if objective.direction == "maximize" else "upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True

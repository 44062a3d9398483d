"""Rich tables of a history: the leaderboard, decision importance, motifs (local results and the cluster view)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from kubenas.api.v1alpha1 import Objective
from kubenas.core.records import TrialRecord, objective_value
from kubenas.insights.genotype import genotype
from kubenas.insights.importance import Importance
from kubenas.insights.motifs import Motifs, top_trials


def sign(objective: Objective) -> float:
    """+1 for a maximised metric, -1 for a minimised one: signed rewards back in the metric's units."""
    return 1.0 if objective.direction == "maximize" else -1.0


def leaderboard(objective: Objective, trials: Sequence[TrialRecord], top: int = 10) -> Table | None:
    """The ``top`` succeeded trials, best first, with their genotype and, when any was bred from
    another, its parent; None when none succeeded."""
    ranked = top_trials(trials, top)
    if not ranked:
        return None
    table = Table(title=f"Leaderboard ({objective.metric}, {objective.direction})")
    table.add_column("#", justify="right")
    table.add_column("trial")
    table.add_column(objective.metric, justify="right")
    # lineage: which trial a leader was bred from (evolution's parent, the progressive search's centre)
    names = {t.index: t.name for t in trials}
    bred = any(t.parents for t in ranked)
    if bred:
        table.add_column("parent")
    table.add_column("architecture", overflow="fold")
    for i, t in enumerate(ranked, 1):
        parent = [", ".join(names.get(p) or f"#{p}" for p in t.parents) or "-"] if bred else []
        value = f"{objective_value(objective, t.reward or 0.0):.4g}"
        table.add_row(str(i), t.name, value, *parent, genotype(t.architecture))
    return table


def front_table(objective: Objective, front: Sequence[dict], size: int | None = None) -> Table:
    """The Pareto front as the experiment status lists it (``paretoFront``: name and values)."""
    objectives = objective.objectives()
    shown = f"{len(front)} of {size}" if size is not None and size > len(front) else str(len(front))
    table = Table(title=f"Pareto front ({shown} trials)")
    table.add_column("trial")
    for o in objectives:
        table.add_column(f"{o.name} ({o.direction[:3]})", justify="right")
    first = objectives[0]
    ordered = sorted(front, key=lambda f: f["values"].get(first.name, 0.0), reverse=first.direction == "maximize")
    for f in ordered:
        values = f.get("values") or {}
        table.add_row(f["name"], *(f"{values[o.name]:.4g}" if o.name in values else "-" for o in objectives))
    return table


def importance_table(imp: Importance, objective: Objective, shown: int = 3) -> Table:
    """Importance per decision; for the ``shown`` most important, each choice's shift of the metric."""
    s = sign(objective)
    table = Table(title=f"What explains {objective.metric} ({imp.evaluator}, {imp.trials} trials)")
    table.add_column("decision")
    table.add_column("importance", justify="right")
    table.add_column(f"{objective.metric} by choice (vs mean)", overflow="fold")
    for k, (name, score) in enumerate(imp.scores):
        effects = imp.effects.get(name, ()) if k < shown else ()
        text = ", ".join(f"{e.choice} {s * e.shift:+.3g} ({e.trials})" for e in effects)
        table.add_row(name, f"{score:.2f}", text)
    return table


def motifs_table(m: Motifs, limit: int = 12) -> Table:
    """The operations most over-represented in the top k, plus parameter-free share and conv depth."""
    table = Table(title=f"Motifs of the top {m.k} of {m.trials} succeeded trials")
    table.add_column("decision")
    table.add_column("operation")
    table.add_column(f"top {m.k}", justify="right")
    table.add_column("all", justify="right")
    for s in m.notable(limit):
        table.add_row(s.decision, s.operation, f"{s.top:.0%}", f"{s.overall:.0%}")
    table.add_section()
    table.add_row("(every edge/layer)", "parameter-free", f"{m.parameter_free[0]:.0%}", f"{m.parameter_free[1]:.0%}")
    table.add_row("(input to output)", "longest conv path", f"{m.conv_depth[0]:.2f}", f"{m.conv_depth[1]:.2f}")
    return table

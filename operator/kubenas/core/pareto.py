"""The Pareto front of a multi-objective search, kept by the core (pure: no I/O, no Optuna).

A trial's objective values are *signed* like rewards (larger is better whatever the direction), so
dominance is one comparison: ``a`` dominates ``b`` when it is at least as good in every objective
and better in one. Only Succeeded trials that reported every objective metric as a finite number
belong to the front; failed, infeasible and pruned trials never do.

:class:`Front` keeps the non-dominated set exactly, one trial at a time (O(front) per trial), so a
driver rebuilt from history holds the same front. What is *shown* is bounded: :meth:`Front.bounded`
keeps at most ``limit`` members, always the extreme ones, thinning the most crowded first
(NSGA-II's crowding distance), so a status or a summary stays small and still spans the front.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubenas.api.v1alpha1 import MAX_FRONT, ObjectiveMetric
from kubenas.core.records import TrialRecord

Values = tuple[float, ...]

__all__ = ["Front", "Values", "dominates", "front_wire", "objective_values", "signed_values"]


def signed_values(objectives: Sequence[ObjectiveMetric], metrics: Mapping[str, float]) -> Values | None:
    """Each objective's value, negated when it is minimised; None when one is missing or not finite."""
    out = []
    for o in objectives:
        value = metrics.get(o.name)
        if value is None or not math.isfinite(float(value)):
            return None
        out.append(float(value) if o.direction == "maximize" else -float(value))
    return tuple(out)


def objective_values(objectives: Sequence[ObjectiveMetric], metrics: Mapping[str, float]) -> dict[str, float]:
    """The objective metrics of a trial in their own direction (for status and reports)."""
    return {o.name: float(metrics[o.name]) for o in objectives if o.name in metrics}


def dominates(a: Values, b: Values) -> bool:
    """Whether ``a`` is at least as good as ``b`` everywhere and better somewhere (signed values)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


class Front:
    """The non-dominated Succeeded trials of a history, updated trial by trial."""

    def __init__(self, objectives: Sequence[ObjectiveMetric], trials: Iterable[TrialRecord] = ()) -> None:
        self.objectives = tuple(objectives)
        self._members: dict[int, tuple[Values, TrialRecord]] = {}
        for t in trials:
            self.add(t)

    def __len__(self) -> int:
        return len(self._members)

    def add(self, trial: TrialRecord) -> bool:
        """Consider a trial; True when it joined the front (and pushed out those it dominates)."""
        if trial.phase != "Succeeded" or trial.index in self._members:
            return False
        values = signed_values(self.objectives, trial.metrics)
        if values is None:
            return False
        if any(dominates(v, values) for v, _ in self._members.values()):
            return False
        for index in [i for i, (v, _) in self._members.items() if dominates(values, v)]:
            del self._members[index]
        self._members[trial.index] = (values, trial)
        return True

    def members(self) -> list[TrialRecord]:
        """Every trial of the front, in ask order."""
        return [self._members[i][1] for i in sorted(self._members)]

    def bounded(self, limit: int = MAX_FRONT) -> list[TrialRecord]:
        """At most ``limit`` trials of the front, in ask order: the extremes of every objective kept,
        the most crowded removed first (smallest crowding distance, ties: the later trial)."""
        kept = dict(self._members)
        while len(kept) > limit:
            distance = _crowding({i: v for i, (v, _) in kept.items()})
            victim = min(kept, key=lambda i: (distance[i], -i))
            del kept[victim]
        return [kept[i][1] for i in sorted(kept)]


def _crowding(points: Mapping[int, Values]) -> dict[int, float]:
    """NSGA-II's crowding distance: per objective, the normalised gap between each point's neighbours."""
    distance = dict.fromkeys(points, 0.0)
    dims = len(next(iter(points.values())))
    for d in range(dims):
        order = sorted(points, key=lambda i: (points[i][d], i))
        low, high = points[order[0]][d], points[order[-1]][d]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high == low:
            continue
        for left, mid, right in zip(order, order[1:], order[2:], strict=False):
            distance[mid] += (points[right][d] - points[left][d]) / (high - low)
    return distance


def front_wire(objectives: Sequence[ObjectiveMetric], members: Iterable[TrialRecord]) -> list[dict[str, Any]]:
    """``[{"name", "values"}]``: trials of the front as the experiment status lists them."""
    return [{"name": t.name, "values": objective_values(objectives, t.metrics)} for t in members]

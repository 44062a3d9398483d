"""Hypervolume of a multi-objective benchmark search, normalised by the table (``--objective``).

Definition (what ``"hypervolume"`` in ``kubenas bench search`` JSON means):

- **Normalisation.** Each objective column is mapped onto ``[0, 1]`` as a *loss* by the table's own
  range: ``(max - v) / (max - min)`` for a maximised column, ``(v - min) / (max - min)`` for a
  minimised one, ``min`` and ``max`` taken over every row of the table with a finite value. So 0 is
  the best value any architecture reaches and 1 the worst, whatever the units (accuracy in percent,
  parameters in MB).
- **Reference point.** ``(1, ..., 1)``: the table's worst value of every objective. Every
  architecture of the table lies inside the box, so every evaluated trial can count.
- **Hypervolume.** The volume of ``[0, 1]^k`` dominated by the trials evaluated so far (failed trials
  left out), computed exactly by Optuna's hypervolume routine (WFG; in two dimensions a sweep). It
  lies in ``[0, 1]``; :func:`table_hypervolume` is that of the whole table's front, the most any
  search can reach.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kubenas.api.v1alpha1 import ObjectiveMetric
from kubenas.core.errors import SpecError


def parse_objective(text: str) -> ObjectiveMetric:
    """``COLUMN:max`` or ``COLUMN:min``; SpecError names ``--objective`` otherwise.

    Several objectives in one value (``acc:max,params:min``) are refused as such: read whole, the text
    would be one objective on a column ``acc:max,params``, and the error would blame the table."""
    column, sep, way = text.rpartition(":")
    directions = {"max": "maximize", "min": "minimize"}
    parts = text.split(",")
    if len(parts) > 1 and all(p.rpartition(":")[2] in directions and p.rpartition(":")[0] for p in parts):
        repeated = " ".join(f"--objective {p}" for p in parts)
        raise SpecError("--objective", f"{text!r} holds {len(parts)} objectives: repeat the option, {repeated}")
    if not sep or not column or way not in directions:
        raise SpecError("--objective", f"{text!r} is not COLUMN:max or COLUMN:min")
    return ObjectiveMetric(name=column, direction=directions[way])


@dataclass(frozen=True)
class Normaliser:
    """Maps objective metrics to losses in ``[0, 1]`` by the table's range (see the module docstring)."""

    objectives: tuple[ObjectiveMetric, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    @classmethod
    def of_columns(cls, objectives: Sequence[ObjectiveMetric], columns: Mapping[str, Sequence[float]]) -> Normaliser:
        lows, highs = [], []
        for o in objectives:
            values = np.array([v for v in columns[o.name] if math.isfinite(v)], dtype=np.float64)
            if len(values) == 0 or values.max() == values.min():
                raise SpecError("--objective", f"column {o.name!r} has no range of finite values to normalise by")
            lows.append(float(values.min()))
            highs.append(float(values.max()))
        return cls(tuple(objectives), tuple(lows), tuple(highs))

    def loss(self, metrics: Mapping[str, float]) -> tuple[float, ...] | None:
        """The normalised losses of one result; None when an objective is missing or not finite."""
        out = []
        for o, low, high in zip(self.objectives, self.low, self.high, strict=True):
            v = metrics.get(o.name)
            if v is None or not math.isfinite(v):
                return None
            out.append((high - v) / (high - low) if o.direction == "maximize" else (v - low) / (high - low))
        return tuple(out)


def hypervolume(losses: Sequence[Sequence[float]]) -> float:
    """Volume of ``[0, 1]^k`` dominated by ``losses`` (reference point ``(1, ..., 1)``); 0 for none."""
    from optuna._hypervolume import compute_hypervolume  # exact, any dimension; Optuna keeps it internal

    points = np.array([p for p in losses if all(x < 1.0 for x in p)], dtype=np.float64)
    if len(points) == 0:
        return 0.0
    return float(compute_hypervolume(points, np.ones(points.shape[1])))


def table_hypervolume(normaliser: Normaliser, rows: Sequence[Mapping[str, float]]) -> float:
    """The hypervolume of every row of the table: the most a search can reach."""
    losses = [x for x in (normaliser.loss(r) for r in rows) if x is not None]
    return hypervolume(losses)

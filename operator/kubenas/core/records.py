"""The trial history as the core sees it, and how results become rewards."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from kubenas.api.v1alpha1 import Objective
from kubenas.core.space import Architecture
from kubenas.core.strategies.base import Observation

TrialPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Infeasible", "Pruned"]
ACTIVE_PHASES: frozenset[str] = frozenset({"Pending", "Running"})
DONE_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "Infeasible", "Pruned"})
#: a learning curve: ``(step, objective metric)`` pairs in increasing step order
Curve = tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class TrialRecord:
    """One trial as kept in history (a Trial object on Kubernetes, a journal line locally).

    ``reward`` is *signed*: larger is better whatever the objective's direction, so strategies and
    the engine compare rewards without knowing the direction. ``tell_sequence`` and
    ``asks_before_tell`` record when the result reached the strategy, which is all replay needs.
    ``curve`` is the objective metric the trial reported step by step (bounded, see
    :data:`kubenas.api.v1alpha1.MAX_CURVE_POINTS`): what a stopping rule judges, kept so that a
    driver rebuilt from history judges the same. A ``Pruned`` trial was stopped by that rule; its
    reward comes from its last reported metrics and it is told as a usable, low-fidelity result.
    ``gpu_seconds`` is the GPU time a finished trial used (wall time times GPUs asked): what
    ``budget.maxGpuHours`` counts.
    """

    index: int
    architecture: Architecture
    name: str = ""
    phase: TrialPhase = "Pending"
    reward: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    reason: str | None = None
    message: str | None = None
    attempts: int = 0
    tell_sequence: int | None = None
    asks_before_tell: int | None = None
    curve: Curve = ()
    #: ask indexes of the trials this one was derived from (evolution's parent, the progressive
    #: search's centre); empty for a candidate drawn anew. Fixed when it is asked.
    parents: tuple[int, ...] = ()
    gpu_seconds: float | None = None

    @property
    def done(self) -> bool:
        return self.phase in DONE_PHASES

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    @property
    def told(self) -> bool:
        return self.tell_sequence is not None

    def observation(self) -> Observation:
        return Observation(
            reward=self.reward,
            failed=self.phase == "Failed",
            feasible=self.phase != "Infeasible",
            metrics=dict(self.metrics),
        )

    def with_(self, **changes: object) -> TrialRecord:
        return replace(self, **changes)  # type: ignore[arg-type]


def trial_name(experiment: str, index: int) -> str:
    """The name of trial ``index`` of an experiment: its Trial, its Job, its results folder."""
    return f"{experiment}-{index:05d}"


def trial_seed(experiment_seed: int, index: int) -> int:
    """The seed handed to trial ``index``: fixed by the experiment's seed, distinct per trial."""
    return (experiment_seed * 1_000_003 + index * 7919 + 17) % (2**31 - 1)


class MissingMetric(KeyError):
    """The trial reported no value for the objective's metric."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        super().__init__(f"the trial reported no '{metric}' metric")


def _measured(metrics: Mapping[str, float], metric: str) -> float | None:
    """A constraint's metric as reported, None when it is missing or not a number (NaN)."""
    value = metrics.get(metric)
    return None if value is None or math.isnan(float(value)) else float(value)


def violations(objective: Objective, metrics: Mapping[str, float]) -> list[str]:
    """What makes a result infeasible, one phrase each: a hard bound crossed, or a constrained metric
    that was not reported (a trial's message, so that ConstraintViolated says which and by how much)."""
    out: list[str] = []
    for c in objective.constraints:
        measured = _measured(metrics, c.metric)
        if measured is None:
            out.append(f"{c.metric} was not reported")
        elif c.mode == "hard" and c.max is not None and measured > c.max:
            out.append(f"{c.metric} {measured:g} is above max {c.max:g}")
        elif c.mode == "hard" and c.min is not None and measured < c.min:
            out.append(f"{c.metric} {measured:g} is below min {c.min:g}")
    return out


def reward_of(objective: Objective, metrics: Mapping[str, float]) -> tuple[float, bool]:
    """``(signed reward, feasible)`` of reported metrics under the objective.

    Hard constraints make the result infeasible. Soft constraints shrink the reward as in MnasNet,
    ``value * (bound / measured) ** weight``, applied so that the penalty always makes the result
    worse whatever the objective's direction.
    """
    if objective.metric not in metrics:
        raise MissingMetric(objective.metric)
    value = float(metrics[objective.metric])
    if not math.isfinite(value):
        return value, False
    signed = value if objective.direction == "maximize" else -value
    feasible = not violations(objective, metrics)
    for c in objective.constraints:
        measured = _measured(metrics, c.metric)
        if measured is None:
            continue
        factor = 1.0
        if c.mode == "soft" and c.max is not None and measured > c.max:
            factor *= (c.max / measured) ** c.weight if measured > 0 and c.max > 0 else 0.0
        if c.mode == "soft" and c.min is not None and measured < c.min:
            factor *= (measured / c.min) ** c.weight if measured > 0 and c.min > 0 else 0.0
        if factor < 1.0:
            signed = signed * factor if signed >= 0 else (signed / factor if factor > 0 else -math.inf)
    return signed, feasible


def objective_value(objective: Objective, reward: float) -> float:
    """The signed reward back in the metric's own direction (for status and reports)."""
    return reward if objective.direction == "maximize" else -reward


def better(trial: TrialRecord, best: TrialRecord | None) -> bool:
    """Whether ``trial`` beats ``best``: succeeded with a finite, larger reward; ties go to the earlier index."""
    if trial.phase != "Succeeded" or trial.reward is None or not math.isfinite(trial.reward):
        return False
    if best is None or best.reward is None or best.index == trial.index:
        return True
    return trial.reward > best.reward or (trial.reward == best.reward and trial.index < best.index)


def best_of(trials: Iterable[TrialRecord]) -> TrialRecord | None:
    """The succeeded trial with the largest reward; ties go to the earliest index."""
    best: TrialRecord | None = None
    for t in trials:
        if better(t, best):
            best = t
    return best

"""Which decisions explain the reward, and how each choice of a decision shifts it.

The importance itself is Optuna's: the history is copied into an in-memory study (one distribution
per decision, one completed trial per succeeded Kubenas trial, its signed reward as the value) and
handed to PED-ANOVA (the default: Pearson divergence between the choices of the better half of the
trials and of all trials; needs nothing but Optuna and takes a fraction of a second, so the cluster
view can recompute it on every refresh) or fANOVA (a random forest's functional ANOVA; needs
scikit-learn and takes seconds to tens of seconds for a few hundred trials). On NAS-Bench-201 both
rank the edges like the exact variance decomposition of the full table (docs/benchmarks.md).

Only succeeded trials with a finite reward count: a failed or infeasible trial has no value to
explain, exactly as Optuna regards failed trials. Everything here is a pure function of the space
and the records.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from kubenas.core.records import TrialRecord
from kubenas.core.space import Categorical, Decision, FloatRange, IntRange, SearchSpace, Value

EvaluatorName = Literal["ped-anova", "fanova"]
EVALUATORS: tuple[str, ...] = ("ped-anova", "fanova")
#: PED-ANOVA's top quantile: the better half. Optuna's default (0.1) asks what makes the top tenth and,
#: with a few hundred trials, ranks NAS-Bench-201's edges far less stably (docs/benchmarks.md)
PED_ANOVA_QUANTILE = 0.5
#: fewer usable trials than this and no importance is computed (the figures would be noise)
MIN_TRIALS = 10
#: continuous decisions are cut into this many equal-count bins for the per-choice effects
FLOAT_BINS = 4


class NotEnoughTrials(ValueError):
    """Too few succeeded trials to say anything about importance."""

    def __init__(self, have: int, need: int) -> None:
        self.have = have
        self.need = need
        super().__init__(f"{have} succeeded trials; importance needs at least {need}")


@dataclass(frozen=True)
class ChoiceEffect:
    """How the reward of trials with one choice (or one bin of a range) differs from all trials.

    ``shift`` is the difference of the mean *signed* reward (larger is better whatever the
    direction) from the mean over every usable trial.
    """

    choice: str
    trials: int
    mean: float
    shift: float


@dataclass(frozen=True)
class Importance:
    """Normalised importance per decision (sums to 1), most important first, and the effects of choices."""

    evaluator: str
    trials: int
    scores: tuple[tuple[str, float], ...]
    effects: Mapping[str, tuple[ChoiceEffect, ...]]

    def ranking(self) -> list[str]:
        return [name for name, _ in self.scores]

    def to_json(self, sign: float = 1.0) -> dict[str, Any]:
        """JSON for summary.json; ``sign`` -1 turns signed rewards back into a minimised metric."""
        return {
            "evaluator": self.evaluator,
            "trials": self.trials,
            "decisions": [
                {
                    "name": name,
                    "importance": round(score, 4),
                    "choices": [
                        {"choice": e.choice, "trials": e.trials, "mean": sign * e.mean, "shift": sign * e.shift}
                        for e in self.effects.get(name, ())
                    ],
                }
                for name, score in self.scores
            ],
        }


def usable(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The trials whose result can be explained: succeeded, with a finite reward."""
    return [r for r in records if r.phase == "Succeeded" and r.reward is not None and math.isfinite(r.reward)]


def _distribution(decision: Decision) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(decision, Categorical):
        return CategoricalDistribution(list(decision.choices))
    if isinstance(decision, IntRange):
        return IntDistribution(decision.low, decision.high, step=decision.step, log=decision.log)
    return FloatDistribution(decision.low, decision.high, step=decision.step, log=decision.log)


def study_of(space: SearchSpace, records: Sequence[TrialRecord]) -> Any:
    """An in-memory Optuna study holding one completed trial per usable record (maximised reward)."""
    import optuna

    distributions = {d.name: _distribution(d) for d in space.decisions}
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.WARNING)  # create_study announces itself at INFO
    try:
        study = optuna.create_study(direction="maximize")
    finally:
        logger.setLevel(level)
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={d.name: r.architecture[d.name] for d in space.decisions},
                distributions=distributions,
                value=float(r.reward),  # type: ignore[arg-type]
            )
            for r in usable(records)
        ]
    )
    return study


def _evaluator(name: str, seed: int) -> Any:
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    if name == "fanova":
        return FanovaImportanceEvaluator(seed=seed)
    if name == "ped-anova":
        return PedAnovaImportanceEvaluator(target_quantile=PED_ANOVA_QUANTILE)
    raise ValueError(f"unknown importance evaluator {name!r} (fanova, ped-anova or auto)")


def importance(
    space: SearchSpace,
    records: Sequence[TrialRecord],
    evaluator: EvaluatorName = "ped-anova",
    seed: int = 0,
    min_trials: int = MIN_TRIALS,
) -> Importance:
    """Importance of every decision that varied in the history, with the effects of its choices.

    Raises :class:`NotEnoughTrials` below ``min_trials`` usable trials.
    """
    rows = usable(records)
    if len(rows) < min_trials:
        raise NotEnoughTrials(len(rows), min_trials)
    varied = [d.name for d in space.decisions if len({repr(r.architecture[d.name]) for r in rows}) > 1]
    scores: dict[str, float] = {}
    if varied:
        import optuna

        raw = optuna.importance.get_param_importances(
            study_of(space, rows), evaluator=_evaluator(evaluator, seed), params=varied
        )
        scores = {k: float(v) for k, v in raw.items()}
    ordered = tuple(sorted(scores.items(), key=lambda kv: (-kv[1], space.names.index(kv[0]))))
    effects = {d.name: choice_effects(d, rows) for d in space.decisions if d.name in scores}
    return Importance(evaluator, len(rows), ordered, effects)


def _label(value: Value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def choice_effects(decision: Decision, records: Sequence[TrialRecord]) -> tuple[ChoiceEffect, ...]:
    """Mean signed reward per choice of ``decision`` and its shift from the overall mean, best first.

    A continuous range is cut into :data:`FLOAT_BINS` equal-count bins labelled by their bounds.
    """
    rows = usable(records)
    if not rows:
        return ()
    rewards = np.array([float(r.reward) for r in rows])  # type: ignore[arg-type]
    overall = float(rewards.mean())
    values = [r.architecture[decision.name] for r in rows]
    if isinstance(decision, FloatRange) and decision.step is None:
        xs = np.array(values, dtype=np.float64)
        edges = np.unique(np.quantile(xs, np.linspace(0.0, 1.0, FLOAT_BINS + 1)))
        bins = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, max(0, len(edges) - 2))
        labels = [f"{edges[b]:.3g}..{edges[min(b + 1, len(edges) - 1)]:.3g}" for b in bins]
    else:
        labels = [_label(v) for v in values]
    groups: dict[str, list[float]] = {}
    for label, reward in zip(labels, rewards, strict=True):
        groups.setdefault(label, []).append(float(reward))
    out = [ChoiceEffect(k, len(v), float(np.mean(v)), float(np.mean(v)) - overall) for k, v in groups.items()]
    return tuple(sorted(out, key=lambda e: -e.shift))


def variance_explained(names: Sequence[str], rows: Sequence[tuple[Mapping[str, Value], float]]) -> dict[str, float]:
    """First-order functional ANOVA computed exactly: ``Var(E[y | decision]) / Var(y)`` per decision.

    On a fully enumerated table (every combination once) this is the exact main-effect share of the
    variance, the reference the sampled importance is checked against.
    """
    ys = np.array([y for _, y in rows], dtype=np.float64)
    total = float(ys.var())
    out: dict[str, float] = {}
    for name in names:
        groups: dict[str, list[float]] = {}
        for arch, y in rows:
            groups.setdefault(repr(arch[name]), []).append(y)
        between = sum(len(g) * (np.mean(g) - ys.mean()) ** 2 for g in groups.values()) / len(ys)
        out[name] = float(between / total) if total > 0 else 0.0
    return out

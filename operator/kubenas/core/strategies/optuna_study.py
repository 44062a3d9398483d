"""Optuna samplers as strategies: the sampler is Optuna's, the bookkeeping is ours (written once).

An in-memory Optuna study mirrors the history: each ask is ``study.ask`` over fixed distributions,
each tell is ``study.tell``. Optuna's samplers are deterministic for a given seed and sequence of
asks and tells, so a replay rebuilds the study exactly (including a sampler's own caches, such as
the GP sampler's last kernel parameters, which are a function of that same sequence).

Duplicates: on a finite space an architecture is never proposed twice. When the sampler suggests one
that was already asked, that Optuna trial is closed at once (with the known reward if there is one,
else as failed) and the sampler is asked again; after ``duplicate_tries`` misses a random unseen
architecture is enqueued instead. Failed and infeasible results are told as the worst usable reward
so far (the ledger's rule), or as failed trials while no usable reward exists.

Several objectives (:meth:`OptunaStrategy.use_objectives`): the study gets one "maximize" direction
per objective and each result is told as its vector of signed objective values
(:func:`kubenas.core.pareto.signed_values`), so a multi-objective sampler (``TPESampler`` becomes
MOTPE, ``NSGAIISampler``) ranks trials by Pareto dominance. A failed or infeasible result, or one
that lacks an objective metric, is told as a failed Optuna trial: there is no "worst vector".
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from kubenas.api.v1alpha1 import ObjectiveMetric
from kubenas.core.pareto import signed_values
from kubenas.core.space import Architecture, Categorical, FloatRange, IntRange, SearchSpace
from kubenas.core.strategies.base import Observation, Strategy
from kubenas.core.strategies.ledger import Ledger, fingerprint, rng_state


def _distribution(decision: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(decision, Categorical):
        return CategoricalDistribution(list(decision.choices))
    if isinstance(decision, IntRange):
        return IntDistribution(decision.low, decision.high, step=decision.step, log=decision.log)
    assert isinstance(decision, FloatRange)
    return FloatDistribution(decision.low, decision.high, step=decision.step, log=decision.log)


class OptunaStrategy(Strategy):
    """A strategy whose proposals come from an Optuna sampler; subclasses only build the sampler."""

    #: sampler suggestions tried before a random unseen architecture is enqueued instead
    duplicate_tries: ClassVar[int] = 8
    multi_objective = True

    def __init__(self, space: SearchSpace, settings: Any, seed: int) -> None:
        super().__init__(space, settings, seed)
        import optuna

        optuna.logging.set_verbosity(logging.WARNING)
        self._optuna = optuna
        self.study = optuna.create_study(direction="maximize", sampler=self._sampler(settings, seed))
        self.distributions = {d.name: _distribution(d) for d in space.decisions}
        self.ledger = Ledger(space)
        self.rng = np.random.default_rng(seed)
        self._trial_of: dict[int, Any] = {}  # ask index -> optuna trial
        self._reward_of: dict[str, float | list[float] | None] = {}  # canonical id -> told value (None: failed)

    def use_objectives(self, objectives: Sequence[ObjectiveMetric]) -> None:
        super().use_objectives(objectives)
        sampler = self._sampler(self.settings, self.seed)
        self.study = self._optuna.create_study(directions=["maximize"] * len(objectives), sampler=sampler)

    def start_from(self, architectures: Sequence[Architecture]) -> None:
        """Enqueued in the study: its first trials (random startup ones included) are these."""
        for arch in architectures:
            self.study.enqueue_trial(dict(arch))

    @abstractmethod
    def _sampler(self, settings: Any, seed: int) -> Any:
        """The Optuna sampler, seeded with ``seed``."""

    def _close_duplicate(self, trial: Any, key: str) -> None:
        reward = self._reward_of.get(key)
        if reward is None:
            self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, reward)

    def _architecture(self, params: dict[str, Any]) -> Architecture:
        """Optuna's parameters as an architecture; stepped floats snapped to the grid the space defines.

        Optuna computes a stepped value as ``low + k * step`` in floating point (0.7000000000000001),
        which would be a different canonical id from the grid's 0.7 and defeat duplicate detection.
        """
        arch = self.space.validate(params)
        for d in self.space.decisions:
            if isinstance(d, FloatRange) and d.step is not None:
                arch[d.name] = d.values()[d.index(arch[d.name])]
        return arch

    def _ask(self) -> Architecture:
        for _ in range(self.duplicate_tries):
            trial = self.study.ask(self.distributions)
            arch = self._architecture(trial.params)
            if self.ledger.is_new(arch) or self.ledger.exhausted:
                break
            self._close_duplicate(trial, self.space.canonical(arch))
        else:
            arch = self.ledger.random_new(self.rng)
            self.study.enqueue_trial(dict(arch))
            trial = self.study.ask(self.distributions)
        self._trial_of[self.asked] = trial
        self.ledger.record_ask(arch)
        return arch

    def _tell(self, index: int, architecture: Architecture, observation: Observation) -> None:
        result = self.ledger.record_tell(index, architecture, observation)
        trial = self._trial_of.pop(index)
        value: float | list[float] | None
        if self.objectives:
            values = signed_values(self.objectives, observation.metrics) if result.usable else None
            value = None if values is None else list(values)
        else:
            value = result.reward if result.usable else self.ledger.penalty()
        self._reward_of[result.key] = value
        if value is None:
            self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, value)

    def state_digest(self) -> str:
        trials = tuple((t.number, t.state.name, t.values, tuple(sorted(t.params.items()))) for t in self.study.trials)
        return fingerprint(self.name, self.ledger.digest_parts(), trials, rng_state(self.rng))

"""An experiment's search in one object: the strategy, the history and the engine together.

Local mode, the benchmark and the controller pod all drive a search through this class, so they
make identical decisions. It is rebuilt from history by replay: ``Search(spec, history)`` ends in the
state of the process that wrote that history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core import engine
from kubenas.core.history import replay
from kubenas.core.records import MissingMetric, TrialRecord, best_of, reward_of, trial_seed
from kubenas.core.space import SearchSpace, build_space
from kubenas.core.strategies import make_strategy

__all__ = ["Search", "trial_seed"]


class Search:
    """Strategy + history + engine. Not thread-safe; one owner drives it."""

    def __init__(
        self, spec: SearchExperimentSpec, history: Sequence[TrialRecord] = (), name_prefix: str = "trial"
    ) -> None:
        self.spec = spec
        self.space: SearchSpace = build_space(spec.search_space)
        self.strategy = make_strategy(spec.strategy, self.space)
        self.name_prefix = name_prefix
        replay(self.strategy, history)
        self._trials: list[TrialRecord] = sorted(history, key=lambda t: t.index)
        self._tells = sum(1 for t in self._trials if t.told)

    # -- reading ---------------------------------------------------------------------------
    @property
    def trials(self) -> tuple[TrialRecord, ...]:
        return tuple(self._trials)

    @property
    def best(self) -> TrialRecord | None:
        return best_of(self._trials)

    def next_action(self, elapsed_seconds: float | None = None) -> engine.Action:
        return engine.decide(self.spec, self._trials, elapsed_seconds)

    def trial_name(self, index: int) -> str:
        return f"{self.name_prefix}-{index:05d}"

    # -- driving ---------------------------------------------------------------------------
    def ask(self) -> TrialRecord:
        """Ask the strategy for the next candidate and record it as a Pending trial."""
        index = len(self._trials)
        arch = self.space.validate(self.strategy.ask())
        rec = TrialRecord(index=index, architecture=arch, name=self.trial_name(index))
        self._trials.append(rec)
        return rec

    def mark_running(self, index: int) -> TrialRecord:
        rec = self._trials[index]
        if rec.phase == "Pending":
            rec = rec.with_(phase="Running")
            self._trials[index] = rec
        return rec

    def tell(
        self,
        index: int,
        metrics: Mapping[str, float] | None,
        failed: bool = False,
        reason: str | None = None,
    ) -> TrialRecord:
        """Record a finished trial and tell the strategy. Idempotent: a second tell returns the first."""
        rec = self._trials[index]
        if rec.told:
            return rec
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        reward: float | None = None
        phase = "Failed"
        if not failed:
            try:
                reward, feasible = reward_of(self.spec.objective, metrics)
                phase = "Succeeded" if feasible else "Infeasible"
                reason = reason if feasible else "ConstraintViolated"
            except MissingMetric:
                reason = "MissingMetric"
        rec = rec.with_(
            phase=phase,
            reward=reward,
            metrics=metrics,
            reason=reason,
            tell_sequence=self._tells,
            asks_before_tell=len(self._trials),
        )
        self._trials[index] = rec
        self._tells += 1
        self.strategy.tell(index, dict(rec.architecture), rec.observation())
        return rec

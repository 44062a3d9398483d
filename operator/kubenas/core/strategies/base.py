"""The ask/tell interface every search strategy implements.

Lifecycle (read this before writing a strategy):

1. A strategy is constructed from ``(space, settings, seed)`` and nothing else.
2. ``ask()`` proposes the next candidate. It may be called several times before any result arrives
   (parallel trials): asks ahead of rewards are normal.
3. ``tell(index, architecture, observation)`` reports the outcome of the candidate returned by the
   ``index``-th ask (0-based). Tells arrive in completion order, which need not be ask order. A failed
   trial is told with ``observation.failed`` True; an infeasible one (hard constraint violated) with
   ``feasible`` False. Both are "worst results": strategies must not select them as parents or
   incumbents, but must not stop working because of them either.
4. A candidate derived from earlier ones (evolution's mutated parent, the progressive search's
   centre) names them: ``_ask`` sets ``self.proposed_from`` to their ask indexes, and
   :attr:`Strategy.parents` keeps that lineage by ask index. It is part of the proposal, so a replay
   proposes the same parents.
5. The strategy is a deterministic function of the seed and the interleaved sequence of asks and tells.
   All randomness comes from generators seeded from ``seed``; no wall clock, no global RNG.
   Consequently replaying a recorded history (:func:`kubenas.core.history.replay`) rebuilds the exact
   state, and the next ask equals that of an unbroken run. Expensive state (an LSTM policy) is a
   cache of the history, never a source of truth.

Rewards are always maximised here: the engine turns a "minimize" objective into a negated reward
before telling.

Several objectives: a strategy that can search a Pareto front says so (``multi_objective``) and is
given the objectives once, before its first ask (:meth:`Strategy.use_objectives`); it reads each
result's objective values from ``observation.metrics``. The reward is then the first objective's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from kubenas.core.errors import SpecError
from kubenas.core.space import Architecture, SearchSpace

if TYPE_CHECKING:
    from kubenas.api.v1alpha1 import ObjectiveMetric


@dataclass(frozen=True)
class Observation:
    """What a finished trial tells the strategy."""

    reward: float | None
    failed: bool = False
    feasible: bool = True
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """True when the reward can be compared (not failed, feasible, finite)."""
        return (not self.failed) and self.feasible and self.reward is not None and np.isfinite(self.reward)


class Strategy(ABC):
    """Base class of search strategies. See the module docstring for the lifecycle."""

    #: the ``spec.strategy.name`` this class implements
    name: ClassVar[str]
    #: whether it can search several objectives (see the module docstring)
    multi_objective: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, settings: Any, seed: int) -> None:
        self.space = space
        self.settings = settings
        self.seed = seed
        self.asked = 0
        self.told = 0
        #: by ask index, the ask indexes of the candidates each one was derived from (empty: drawn anew)
        self.parents: list[tuple[int, ...]] = []
        #: set by ``_ask`` when the candidate it returns derives from earlier candidates
        self.proposed_from: tuple[int, ...] = ()
        self.objectives: tuple[ObjectiveMetric, ...] = ()

    def use_objectives(self, objectives: Sequence[ObjectiveMetric]) -> None:
        """Search the Pareto front of these objectives; called once, before the first ask."""
        if self.asked:
            raise RuntimeError("objectives are set before the first ask")
        self.objectives = tuple(objectives)

    def ask(self) -> Architecture:
        """The next candidate. Counts asks so that tells can be matched to them, and records its parents."""
        self.proposed_from = ()
        arch = self._ask()
        self.parents.append(tuple(self.proposed_from))
        self.asked += 1
        return arch

    def tell(self, index: int, architecture: Architecture, observation: Observation) -> None:
        """Report the outcome of the ``index``-th candidate."""
        if not 0 <= index < self.asked:
            raise ValueError(f"tell for candidate #{index} but only {self.asked} were asked")
        self._tell(index, architecture, observation)
        self.told += 1

    def start_from(self, architectures: Sequence[Architecture]) -> None:
        """Propose these first, before any ask (``seedFrom``: another search's best architectures)."""
        raise SpecError("spec.strategy.seedFrom", f"the {self.name} strategy cannot start from given architectures")

    @abstractmethod
    def _ask(self) -> Architecture: ...

    @abstractmethod
    def _tell(self, index: int, architecture: Architecture, observation: Observation) -> None: ...

    def state_digest(self) -> str:
        """A short fingerprint of the internal state, for replay tests. Override for richer state."""
        return f"{self.name}:{self.asked}:{self.told}"

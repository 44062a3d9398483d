"""The strategy side of an experiment: a strategy, its space and the candidates it proposed.

This is what the controller pod holds (behind HTTP) and what local mode and the benchmark hold in
process. It only asks and tells; what a result means, when to ask and when to stop is the
:class:`~kubenas.core.driver.Driver`'s business. It is rebuilt from history by replay:
``Search(spec, history)`` ends in the state of the process that saw that history.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.driver import AskFor, Candidate, Proposed, Tell
from kubenas.core.history import replay
from kubenas.core.records import TrialRecord
from kubenas.core.space import Architecture, SearchSpace, build_space
from kubenas.core.strategies import make_strategy
from kubenas.core.strategies.base import Observation, Strategy

__all__ = ["Search"]


class OutOfOrder(ValueError):
    """A tell for a candidate that was never asked, or an ask that skips candidates."""


class Search:
    """Strategy + space + the candidates asked so far. Not thread-safe; one owner drives it."""

    def __init__(self, spec: SearchExperimentSpec, history: Sequence[TrialRecord] = ()) -> None:
        self.spec = spec
        self.space: SearchSpace = build_space(spec.search_space)
        objectives = spec.objective.objectives() if spec.objective.multi else ()
        self.strategy: Strategy = make_strategy(spec.strategy, self.space, objectives)
        unrecorded = replay(self.strategy, history)
        recorded = [dict(t.architecture) for t in sorted(history, key=lambda t: t.index)]
        self.architectures: list[Architecture] = recorded + [self.space.validate(a) for a in unrecorded]
        self._told: set[int] = {t.index for t in history if t.told}

    @property
    def asked(self) -> int:
        return len(self.architectures)

    @property
    def told(self) -> int:
        return len(self._told)

    def ask(self, index: int, count: int) -> list[Candidate]:
        """Candidates ``index`` .. ``index + count - 1``; those already asked come back as recorded
        (an owner that lost an answer asks again and gets the same candidate)."""
        if index < 0 or count < 0:
            raise OutOfOrder("index and count must not be negative")
        if index > self.asked:
            raise OutOfOrder(f"asked for candidate #{index} but only {self.asked} were asked")
        while self.asked < index + count:
            self.architectures.append(self.space.validate(self.strategy.ask()))
        return [
            Candidate(
                i, dict(self.architectures[i]), self.space.canonical(self.architectures[i]), self.strategy.parents[i]
            )
            for i in range(index, index + count)
        ]

    def tell(self, index: int, observation: Observation) -> bool:
        """Tell the strategy candidate ``index``'s result; False (and nothing told) if it was told already."""
        if not 0 <= index < self.asked:
            raise OutOfOrder(f"tell for candidate #{index} but {self.asked} were asked")
        if index in self._told:
            return False
        self._told.add(index)
        self.strategy.tell(index, dict(self.architectures[index]), observation)
        return True

    def serve(self, command: AskFor | Tell) -> Proposed | None:
        """Carry out a driver command that touches the strategy, in process."""
        if isinstance(command, AskFor):
            return Proposed(tuple(self.ask(command.index, command.count)))
        self.tell(command.trial.index, command.trial.observation())
        return None

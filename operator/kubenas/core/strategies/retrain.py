"""Retrain: the architectures a finished search found best, proposed again in order.

The second phase of the usual NAS workflow (search on a cheap proxy, retrain the top k in full) is
an ordinary experiment whose strategy does not search: it proposes the resolved list of
``spec.strategy.retrain.architectures`` one after the other. Finding that list is I/O (a results
folder, another experiment's Trials) and belongs to the adapters (:mod:`kubenas.core.retrain` ranks
what they read); by the time a strategy is built the list is part of the accepted spec, so the
strategy is a function of the spec alone and a replay rebuilds it exactly.
"""

from __future__ import annotations

from kubenas.api.strategy import RetrainSettings
from kubenas.core.errors import SpecError
from kubenas.core.space import Architecture, SearchSpace
from kubenas.core.strategies.base import Observation, Strategy
from kubenas.core.strategies.ledger import fingerprint

FIELD = "spec.strategy.retrain.architectures"


class Retrain(Strategy):
    """Propose ``settings.architectures`` in order; past the end, the list again (each trial has its
    own seed, so a second round retrains the same architectures with other seeds). Results do not
    change the order: the leaderboard of the retrain is the point, not a search."""

    name = "retrain"

    def __init__(self, space: SearchSpace, settings: RetrainSettings, seed: int) -> None:
        super().__init__(space, settings, seed)
        if not settings.architectures:
            raise SpecError(
                FIELD,
                "no architectures: the source search must be resolved before the run starts"
                " (kubenas run and the operator do it when they first accept the experiment)",
            )
        # validated once here, so an architecture the space refuses fails the experiment at its start
        self.architectures: list[Architecture] = [
            space.validate(c.architecture, f"{FIELD}[{i}].architecture") for i, c in enumerate(settings.architectures)
        ]
        #: what was told, in tell order: results never steer a retrain, but replay tests compare them
        self.results: list[tuple[int, float | None, bool]] = []

    def _ask(self) -> Architecture:
        return dict(self.architectures[self.asked % len(self.architectures)])

    def _tell(self, index: int, architecture: Architecture, observation: Observation) -> None:
        self.results.append((index, observation.reward, observation.usable))

    def state_digest(self) -> str:
        return fingerprint(self.name, self.asked, tuple(self.results))

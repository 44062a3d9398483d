"""Random search: the baseline every other strategy has to beat."""

from __future__ import annotations

import numpy as np

from kubenas.api.strategy import RandomSettings
from kubenas.core.space import Architecture, SearchSpace
from kubenas.core.strategies.base import Observation, Strategy
from kubenas.core.strategies.ledger import Ledger, fingerprint, rng_state


class RandomSearch(Strategy):
    """Uniform sampling without repeats: each architecture is proposed at most once until the space
    is exhausted, so on a small finite space random search degrades gracefully into a shuffled grid.
    Results are only recorded; failures change nothing.
    """

    name = "random"
    multi_objective = True  # rewards change nothing it does

    def __init__(self, space: SearchSpace, settings: RandomSettings, seed: int) -> None:
        super().__init__(space, settings, seed)
        self.rng = np.random.default_rng(seed)
        self.ledger = Ledger(space)

    def _ask(self) -> Architecture:
        arch = self.ledger.random_new(self.rng)
        self.ledger.record_ask(arch)
        return arch

    def _tell(self, index: int, architecture: Architecture, observation: Observation) -> None:
        self.ledger.record_tell(index, architecture, observation)

    def state_digest(self) -> str:
        return fingerprint(self.name, self.ledger.digest_parts(), rng_state(self.rng))

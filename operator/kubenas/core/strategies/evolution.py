"""Regularized (aging) evolution, Real et al. 2019."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from kubenas.api.strategy import EvolutionSettings
from kubenas.core.space import Architecture, SearchSpace
from kubenas.core.strategies.base import Observation, Strategy
from kubenas.core.strategies.ledger import Ledger, Result, fingerprint, rng_state

#: mutations of a parent tried before the child is drawn at random instead
MUTATION_TRIES = 32


class RegularizedEvolution(Strategy):
    """Tournament selection, a mutated child per ask, and the oldest member dies.

    The first ``population_size`` asks are random. Afterwards each ask draws ``sample_size`` members of
    the population (without replacement), takes the best as parent and mutates ``mutations`` of its
    decisions; a child that was already proposed is mutated again (at most ``MUTATION_TRIES`` times,
    then a random unseen architecture is used). Told results join the population in tell order and the
    oldest leaves once it is over ``population_size`` ("aging" regularizes against lucky rewards).
    Failed and infeasible results never join, so they can never be parents. A mutated child names
    its parent (:attr:`Strategy.parents`); a random one has none.

    With parallel trials the asks simply evolve from the population as it stands, which is the
    asynchronous variant of the paper.
    """

    name = "evolution"

    def __init__(self, space: SearchSpace, settings: EvolutionSettings, seed: int) -> None:
        super().__init__(space, settings, seed)
        self.rng = np.random.default_rng(seed)
        self.ledger = Ledger(space)
        self.population: deque[Result] = deque()

    def _ask(self) -> Architecture:
        s: EvolutionSettings = self.settings
        if self.asked < s.population_size or not self.population:
            arch = self.ledger.random_new(self.rng)
        else:
            parent = self._tournament(min(s.sample_size, len(self.population)))
            mutants: list[Architecture] = []

            def mutate() -> Architecture:
                mutants.append(self.space.mutate(parent.architecture, self.rng, s.mutations))
                return mutants[-1]

            arch = self.ledger.fresh(mutate, self.rng, MUTATION_TRIES)
            if mutants and arch is mutants[-1]:  # a mutant of the parent, not the random fallback
                self.proposed_from = (parent.index,)
        self.ledger.record_ask(arch)
        return arch

    def start_from(self, architectures: Sequence[Architecture]) -> None:
        """The first population starts with these (the rest of it is random)."""
        self.ledger.first.extend(architectures)

    def _tournament(self, k: int) -> Result:
        picks = [int(i) for i in self.rng.choice(len(self.population), size=k, replace=False)]
        # best reward wins; among equals the youngest (last told), which keeps the population moving
        best = max(picks, key=lambda i: (self.population[i].reward, i))
        return self.population[best]

    def _tell(self, index: int, architecture: Architecture, observation: Observation) -> None:
        result = self.ledger.record_tell(index, architecture, observation)
        if result.usable:
            self.population.append(result)
            if len(self.population) > self.settings.population_size:
                self.population.popleft()

    def state_digest(self) -> str:
        members = tuple(r.index for r in self.population)
        return fingerprint(self.name, self.ledger.digest_parts(), members, rng_state(self.rng))

"""What a strategy has asked and been told: the shared bookkeeping behind every strategy.

Every strategy needs the same three things from the history: which architectures were already
proposed (so a finite space is never searched twice), the usable results in the order they arrived,
and one rule for failed and infeasible trials. Keeping them here means that rule is written once:

* a *failed* or *infeasible* result is never a parent, an incumbent or a sample of "good" results;
* strategies that learn from rewards (REINFORCE, TPE, the progressive surrogate) see it as the worst
  usable reward observed so far (:meth:`Ledger.penalty`), so they move away from it; before any
  usable reward exists there is nothing to compare with and it is skipped.

The ledger is itself a pure function of the interleaved asks and tells, so it is rebuilt exactly by a
replay, like the rest of a strategy's state.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kubenas.core.space import Architecture, SearchSpace
from kubenas.core.strategies.base import Observation

#: random draws tried before falling back to a scan for an unseen architecture
RANDOM_TRIES = 64


@dataclass(frozen=True)
class Result:
    """One told result, in tell order."""

    index: int
    architecture: Architecture
    key: str
    reward: float | None
    usable: bool


class Ledger:
    """Asked architectures (by ask index and canonical id) and told results (in tell order)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.asked: list[Architecture] = []
        self.keys: list[str] = []
        self.seen: set[str] = set()
        self.results: list[Result] = []
        self._worst: float | None = None
        self._best: Result | None = None
        #: architectures to propose before any random one (seedFrom), in order
        self.first: list[Architecture] = []

    # -- asks ---------------------------------------------------------------------------------
    def is_new(self, architecture: Architecture) -> bool:
        return self.space.canonical(architecture) not in self.seen

    @property
    def exhausted(self) -> bool:
        """True once every architecture of a finite space has been proposed."""
        size = self.space.size
        return size is not None and len(self.seen) >= size

    def record_ask(self, architecture: Architecture) -> None:
        key = self.space.canonical(architecture)
        self.asked.append(architecture)
        self.keys.append(key)
        self.seen.add(key)

    # -- tells --------------------------------------------------------------------------------
    def record_tell(self, index: int, architecture: Architecture, observation: Observation) -> Result:
        usable = observation.usable
        reward = float(observation.reward) if usable and observation.reward is not None else None
        result = Result(index, architecture, self.space.canonical(architecture), reward, usable)
        self.results.append(result)
        if reward is not None:
            self._worst = reward if self._worst is None else min(self._worst, reward)
            if self._best is None or reward > (self._best.reward or -math.inf):
                self._best = result
        return result

    @property
    def usable(self) -> list[Result]:
        return [r for r in self.results if r.usable]

    @property
    def best(self) -> Result | None:
        """The incumbent: the first usable result with the highest reward."""
        return self._best

    def penalty(self) -> float | None:
        """The reward a failed or infeasible result stands for: the worst usable reward so far."""
        return self._worst

    # -- proposing unseen architectures -------------------------------------------------------
    def fresh(self, propose: Callable[[], Architecture], rng: np.random.Generator, tries: int) -> Architecture:
        """``propose()`` until it gives an unseen architecture, else a random unseen one.

        Strategies pass their own proposal (a mutation, a policy sample); this wrapper is what makes
        "never propose the same architecture twice" hold for all of them.
        """
        for _ in range(tries):
            arch = propose()
            if self.is_new(arch):
                return arch
        return self.random_new(rng)

    def next_first(self) -> Architecture | None:
        """The next of the architectures to propose first that was not asked yet; None once they are used."""
        while self.first:
            arch = self.first.pop(0)
            if self.is_new(arch):
                return arch
        return None

    def random_new(self, rng: np.random.Generator) -> Architecture:
        """The next architecture to propose first (seedFrom), else a uniformly drawn architecture not
        asked before; a repeat only once the space is exhausted."""
        first = self.next_first()
        if first is not None:
            return first
        arch = self.space.sample(rng)
        if self.is_new(arch) or self.exhausted:
            return arch
        for _ in range(RANDOM_TRIES - 1):
            arch = self.space.sample(rng)
            if self.is_new(arch):
                return arch
        size = self.space.size
        if size is None:
            return arch
        # A densely searched finite space: scan ranks from a random start; at most len(seen) steps.
        start = int(rng.integers(size))
        for step in range(size):
            candidate = self.space.unrank((start + step) % size)
            if self.is_new(candidate):
                return candidate
        return arch  # pragma: no cover - unreachable while not exhausted

    # -- replay checks ------------------------------------------------------------------------
    def digest_parts(self) -> tuple[object, ...]:
        return (tuple(self.keys), tuple((r.index, r.reward, r.usable) for r in self.results))


def best_and_recent(rewards: Sequence[float], cap: int) -> list[int]:
    """Positions (in order) of ``cap`` results: the ``cap // 2`` best, then the most recent others.

    Why this rule for a surrogate's training set: the best results say where the optimum is, the
    recent ones describe where the search is now; both are functions of the history, so a replay
    keeps the same points. Ties go to the earlier result.
    """
    n = len(rewards)
    if n <= cap:
        return list(range(n))
    best = set(sorted(range(n), key=lambda i: (-rewards[i], i))[: cap // 2])
    recent = [i for i in range(n - 1, -1, -1) if i not in best][: cap - len(best)]
    return sorted(best | set(recent))


def fingerprint(*parts: object) -> str:
    """A short stable hash of ``repr(parts)``: state digests for replay tests."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def rng_state(rng: np.random.Generator) -> object:
    """The generator's state in a hashable, printable form."""
    return rng.bit_generator.state

"""Grid search: every architecture of the (discretized) space once, in a seeded scrambled order."""

from __future__ import annotations

import hashlib

import numpy as np

from kubenas.api.strategy import GridSettings
from kubenas.core.space import Architecture, SearchSpace
from kubenas.core.strategies.base import Observation, Strategy
from kubenas.core.strategies.discrete import discretize
from kubenas.core.strategies.ledger import Ledger, fingerprint


class ScrambledRanks:
    """A seeded bijection of ``range(n)``, evaluated one position at a time.

    A Feistel network permutes the integers below the next even power of two; positions that land
    at or beyond ``n`` are walked through the network again until they fall inside (cycle walking),
    which keeps it a bijection. Nothing of size ``n`` is ever materialised, so a grid over 10^30
    architectures costs the same as one over 100.
    """

    ROUNDS = 4

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError("an empty range has no permutation")
        self.n = n
        bits = max(2, (n - 1).bit_length())
        bits += bits % 2
        self.half = bits // 2
        self.mask = (1 << self.half) - 1
        self.width = max(8, (self.half + 7) // 8)
        keys = np.random.default_rng(seed).integers(0, 2**63, size=self.ROUNDS)
        self.keys = [int(k).to_bytes(8, "little") for k in keys]

    def _mix(self, value: int, key: bytes) -> int:
        digest = hashlib.blake2b(value.to_bytes(self.width, "little"), key=key, digest_size=64).digest()
        return int.from_bytes(digest, "little") & self.mask

    def _encrypt(self, x: int) -> int:
        left, right = x >> self.half, x & self.mask
        for key in self.keys:
            left, right = right, left ^ self._mix(right, key)
        return (left << self.half) | right

    def __getitem__(self, position: int) -> int:
        x = self._encrypt(position % self.n)
        while x >= self.n:
            x = self._encrypt(x)
        return x


class GridSearch(Strategy):
    """Exhaustive search over the grid of the space (float ranges take ``float_steps`` points).

    With ``shuffle`` (the default) the grid is visited in a seeded scrambled order, so a search cut
    short by its budget is still a uniform sample instead of a corner of the space. Results do not
    change the order; after the last grid point the grid starts over.
    """

    name = "grid"
    multi_objective = True  # rewards change nothing it does

    def __init__(self, space: SearchSpace, settings: GridSettings, seed: int) -> None:
        super().__init__(space, settings, seed)
        self.grid = discretize(space, settings.float_steps)
        size = self.grid.size
        assert size is not None
        self.order = ScrambledRanks(size, seed) if settings.shuffle else None
        self.ledger = Ledger(space)

    def _ask(self) -> Architecture:
        position = self.asked % self.grid.size  # type: ignore[operator]
        rank = self.order[position] if self.order is not None else position
        arch = self.grid.unrank(rank)
        self.ledger.record_ask(arch)
        return arch

    def _tell(self, index: int, architecture: Architecture, observation: Observation) -> None:
        self.ledger.record_tell(index, architecture, observation)

    def state_digest(self) -> str:
        return fingerprint(self.name, self.ledger.digest_parts())

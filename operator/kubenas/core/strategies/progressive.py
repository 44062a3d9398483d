"""Model-based progressive search: surrogate-ranked local search with surrogate-chosen restarts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kubenas.api.strategy import ProgressiveSettings
from kubenas.core.space import Architecture, SearchSpace
from kubenas.core.strategies.base import Observation, Strategy
from kubenas.core.strategies.discrete import discretize
from kubenas.core.strategies.ledger import Ledger, best_and_recent, fingerprint, rng_state
from kubenas.core.strategies.surrogate import HammingGP

#: decisions with more grid values than this (wide int ranges) are thinned to this many
MAX_CHOICES = 32
#: growth of the history (fraction of the results told) that triggers a new choice of GP hyperparameters
REFIT_GROWTH = 0.2


class Progressive(Strategy):
    """A Gaussian-process surrogate steers a local search that restarts where the model is hopeful.

    Why this shape: on architecture tables the good cells sit in a few basins; a local search
    (change one decision at a time) climbs a basin in a few dozen trials, and a surrogate trained on
    every result orders the neighbours so the climb wastes fewer of them. What costs the most is a
    search stuck on a local optimum, so once a centre's neighbourhood is used up the search restarts
    from the candidate of highest expected improvement at least ``restart_distance`` decisions away
    from every local optimum found so far. The search progresses run by run:

    1. ``initial_samples`` random architectures.
    2. A run's centre is the best result of the run so far (the first run counts the random ones;
       before a run has a result, its starting point). The next candidate is the unseen neighbour of
       the centre (one decision changed) with the highest expected improvement under the surrogate.
    3. When the centre has no unseen neighbour it is a local optimum: a new run starts from the
       candidate of highest expected improvement among ``candidates`` random unseen architectures far
       enough from the local optima.

    The surrogate is an exponential-Hamming-kernel GP (``surrogate.py``) refitted on every ask, its
    hyperparameters chosen again whenever the history grew by a fifth. It is fitted on at most
    ``max_points`` results, the best half and then the most recent, which bounds the cost of an ask
    (the GP is cubic in its data) and is still a function of the history, so a replay rebuilds it.
    Failed and infeasible results enter it at the worst usable reward so far and are never centres.
    Float ranges are searched on ``float_steps`` grid points.

    Parallel trials: pending candidates count as seen, and they enter the surrogate at its own
    prediction (kriging believer). That leaves the mean as it was but shrinks the uncertainty around
    them, so expected improvement spreads the parallel asks over the neighbourhood instead of taking
    the next-best neighbours of the same spot. Why expected improvement rather than the mean: on the
    generated tables (``kubenas bench nk-suite``, 100 seeds) it was better or level at 50 and 100
    trials, and it is what lets the believer act (the mean alone ignores pending trials).
    """

    name = "progressive"

    def __init__(self, space: SearchSpace, settings: ProgressiveSettings, seed: int) -> None:
        super().__init__(space, settings, seed)
        self.grid = discretize(space, settings.float_steps, MAX_CHOICES)
        self.sizes = np.array([d.cardinality for d in self.grid.decisions], dtype=np.int64)
        self.rng = np.random.default_rng(seed)
        self.ledger = Ledger(self.grid)
        self.model = HammingGP(self.sizes)
        self.indices: list[tuple[int, ...]] = []  # by ask index
        self.seen: set[tuple[int, ...]] = set()
        self.asked_at: dict[tuple[int, ...], int] = {}  # grid indices -> first ask index (lineage)
        self.run_start = 0
        self.run_told = 0
        self.restart_bar = np.inf
        self.optima: list[tuple[int, ...]] = []
        self.fitted_on = 0
        self.pending: dict[int, tuple[int, ...]] = {}  # ask index -> indices, asked and not yet told

    # -- the surrogate ------------------------------------------------------------------------
    def _training_set(self) -> tuple[np.ndarray, np.ndarray] | None:
        penalty = self.ledger.penalty()
        if penalty is None:
            return None
        rows = [(self.indices[r.index], r.reward if r.usable else penalty) for r in self.ledger.results]
        rows = [rows[i] for i in best_and_recent([float(r[1]) for r in rows], self.settings.max_points)]
        x = np.array([r[0] for r in rows], dtype=np.int64)
        y = np.array([r[1] for r in rows], dtype=np.float64)
        return x, y

    def _fit(self) -> bool:
        data = self._training_set()
        if data is None or len(data[1]) < 2:
            return False
        x, y = data
        told = len(self.ledger.results)
        if told >= self.fitted_on * (1 + REFIT_GROWTH) + 1:
            self.model.select_hyperparameters(x, y)
            self.fitted_on = told
        self.model.fit(x, y)
        if self.pending:
            pending = np.array(list(self.pending.values()), dtype=np.int64)
            believed = self.model.rewards(self.model.mean(pending))
            self.model.fit(np.concatenate([x, pending]), np.concatenate([y, believed]))
        return True

    # -- candidates ---------------------------------------------------------------------------
    def _unseen(self, rows: np.ndarray) -> np.ndarray:
        keep = [i for i, row in enumerate(map(tuple, rows.tolist())) if row not in self.seen]
        return rows[keep]

    def _neighbours(self, centre: tuple[int, ...]) -> np.ndarray:
        rows = []
        for d, size in enumerate(self.sizes.tolist()):
            for v in range(size):
                if v != centre[d]:
                    row = list(centre)
                    row[d] = v
                    rows.append(row)
        return self._unseen(np.array(rows, dtype=np.int64).reshape(-1, len(self.sizes)))

    def _centre(self) -> tuple[int, ...]:
        run = [r for r in self.ledger.results if r.usable and r.index >= self.run_start]
        # With parallel trials a neighbour of the last centre may report after the restart: if it beats
        # that centre, the centre was no local optimum and the climb goes on from there.
        run += [
            r
            for r in self.ledger.results[self.run_told :]
            if r.reward is not None and r.index < self.run_start and r.reward > self.restart_bar
        ]
        if not run:
            return self.indices[self.run_start]
        best = max(run, key=lambda r: (r.reward, -r.index))
        return self.indices[best.index]

    def _restart(self) -> tuple[int, ...] | None:
        s: ProgressiveSettings = self.settings
        pool = self._unseen(self.rng.integers(0, self.sizes, size=(s.candidates, len(self.sizes))))
        if self.optima and len(pool):
            optima = np.array(self.optima)
            distance = (pool[:, None, :] != optima[None, :, :]).sum(axis=2).min(axis=1)
            pool = pool[distance >= min(s.restart_distance, len(self.sizes))]
        if not len(pool):
            return None
        _, first = np.unique(pool, axis=0, return_index=True)
        pool = pool[np.sort(first)]
        return tuple(int(v) for v in pool[int(np.argmax(self.model.expected_improvement(pool)))])

    def start_from(self, architectures: Sequence[Architecture]) -> None:
        """The initial samples start with these, so the first run's centre is the best of them."""
        self.ledger.first.extend(self.grid.from_indices(self.grid.indices(a)) for a in architectures)

    # -- ask/tell -----------------------------------------------------------------------------
    def _propose(self) -> tuple[int, ...] | None:
        if self.asked < self.settings.initial_samples or not self._fit():
            return None
        centre = self._centre()
        options = self._neighbours(centre)
        if len(options):
            self.proposed_from = (self.asked_at[centre],)  # lineage: the neighbour's parent is the centre
            return tuple(int(v) for v in options[int(np.argmax(self.model.expected_improvement(options)))])
        self.optima.append(centre)
        self.restart_bar = max(
            (r.reward for r in self.ledger.results if r.usable and self.indices[r.index] == centre), default=np.inf
        )
        self.run_start, self.run_told = self.asked, len(self.ledger.results)
        return self._restart()

    def _ask(self) -> Architecture:
        chosen = self._propose()
        arch = self.ledger.random_new(self.rng) if chosen is None else self.grid.from_indices(chosen)
        key = self.grid.indices(arch)
        self.indices.append(key)
        self.seen.add(key)
        self.pending[self.asked] = key
        self.asked_at.setdefault(key, self.asked)
        self.ledger.record_ask(arch)
        return arch

    def _tell(self, index: int, architecture: Architecture, observation: Observation) -> None:
        self.ledger.record_tell(index, architecture, observation)
        self.pending.pop(index, None)

    def state_digest(self) -> str:
        return fingerprint(
            self.name,
            self.ledger.digest_parts(),
            (self.run_start, self.run_told, self.restart_bar),
            tuple(self.optima),
            (self.model.lengthscale, self.model.noise, self.fitted_on),
            rng_state(self.rng),
        )

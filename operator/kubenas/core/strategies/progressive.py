"""Model-based search: Bayesian optimisation over architectures with a categorical Gaussian process."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kubenas.api.strategy import ProgressiveSettings
from kubenas.core.space import Architecture, SearchSpace
from kubenas.core.strategies.base import Observation, Strategy
from kubenas.core.strategies.discrete import discretize
from kubenas.core.strategies.ledger import Ledger, best_and_recent, fingerprint, rng_state
from kubenas.core.strategies.surrogate import HammingGP, normal_scores, rank_positions

#: decisions with more grid values than this (wide int ranges) are thinned to this many
MAX_CHOICES = 32
#: growth of the history (fraction of the results told) that triggers a new choice of GP hyperparameters
REFIT_GROWTH = 0.2
#: results whose one-decision neighbours join the candidates
TOP_RESULTS = 5
#: best candidates from which a climb on expected improvement starts
CLIMBS = 5


class Progressive(Strategy):
    """A Gaussian process over architectures proposes the candidate of highest expected improvement.

    Why this shape (issue 17, measured on NAS-Bench-201 and on generated NK tables of 7 to 12
    decisions, see docs/benchmarks.md): Bayesian optimisation with a kernel fitted per decision finds
    good cells in fewer trials than a local search, which spends a trial on every neighbour of a
    centre before it may leave it. The search:

    1. ``initial_samples`` architectures of a balanced design: each choice of each decision appears
       equally often (as far as the count allows), in a random order per decision, so the first fit
       sees every choice of every decision.
    2. Then, on every ask, the surrogate (``surrogate.py``: exponential Hamming kernel with one weight
       per decision, fitted by marginal likelihood) is fitted on the results, and the candidate of
       highest expected improvement is proposed. Candidates: ``candidates`` random architectures and
       the one-decision neighbours of the best ``TOP_RESULTS`` results; from the best ``CLIMBS`` of
       them, a climb on expected improvement through one-decision changes. Only unseen architectures
       count.

    Numeric decisions (int and float ranges, numeric choices) may also be ordered in the kernel, when
    the marginal likelihood says their order helps (``surrogate.py``): near widths or learning rates
    then predict each other, as they do for Optuna's GP sampler on numeric parameters.

    The surrogate sees the rewards as normal scores of their ranks (``normal_scores``): tables have
    long tails of broken architectures, which on raw values dominate the fit. Its hyperparameters are
    chosen again whenever the history grew by a fifth. It is fitted on at most ``max_points``
    results, the best half and then the most recent, which bounds the cost of an ask (the GP is
    cubic in its data) and is still a function of the history, so a replay rebuilds it. Failed and
    infeasible results enter it at the worst usable reward so far. Float ranges are searched on
    ``float_steps`` grid points.

    Parallel trials: pending candidates count as seen, and they enter the surrogate at its own
    prediction (kriging believer). That leaves the mean as it was but shrinks the uncertainty around
    them, so expected improvement spreads the parallel asks instead of taking the next-best
    candidates of the same spot. With parallel trials, asks go past the design before its results
    are in: the model waits for ``initial_samples`` results (at ``--parallel 8`` on the generated
    tables this lost less than fitting on the first few), and until then the design goes on with
    further balanced blocks of ``initial_samples`` rows, so the first fit sees every choice about
    equally often however many asks ran ahead (random asks there were level or behind, see
    docs/benchmarks.md). A search without asks ahead of results never reaches that branch.

    Lineage: a candidate one decision away from an evaluated architecture names the best such one as
    its parent (its weights are the nearest start).
    """

    name = "progressive"

    def __init__(self, space: SearchSpace, settings: ProgressiveSettings, seed: int) -> None:
        super().__init__(space, settings, seed)
        self.grid = discretize(space, settings.float_steps, MAX_CHOICES)
        self.sizes = np.array([d.cardinality for d in self.grid.decisions], dtype=np.int64)
        self.rng = np.random.default_rng(seed)
        self.ledger = Ledger(self.grid)
        self.model = HammingGP(self.sizes, [rank_positions(d.values()) for d in self.grid.decisions])
        self.indices: list[tuple[int, ...]] = []  # by ask index
        self.seen: set[tuple[int, ...]] = set()
        self.asked_at: dict[tuple[int, ...], int] = {}  # grid indices -> first ask index (lineage)
        self.design = self._design()
        self.fitted_on = 0
        self.pending: dict[int, tuple[int, ...]] = {}  # ask index -> indices, asked and not yet told

    def _design(self) -> np.ndarray:
        """The initial rows: each choice of each decision equally often, in a random order per decision."""
        n = self.settings.initial_samples
        return np.stack([self.rng.permutation(np.resize(np.arange(size), n)) for size in self.sizes.tolist()], axis=1)

    def _design_row(self, position: int) -> tuple[int, ...] | None:
        """Row ``position`` of the design, extended by a further balanced block when the asks outrun it
        (parallel trials only: the block is drawn on first need, so a sequential search draws the same
        numbers as before); None when the row was seen or a given start (seedFrom) comes first."""
        while position >= len(self.design):
            self.design = np.concatenate([self.design, self._design()])
        row = tuple(int(v) for v in self.design[position])
        return None if self.ledger.first or row in self.seen else row

    # -- the surrogate ------------------------------------------------------------------------
    def _training_set(self) -> tuple[np.ndarray, np.ndarray] | None:
        penalty = self.ledger.penalty()
        if penalty is None:
            return None
        rows = [(self.indices[r.index], r.reward if r.usable else penalty) for r in self.ledger.results]
        rows = [rows[i] for i in best_and_recent([float(r[1]) for r in rows], self.settings.max_points)]
        x = np.array([r[0] for r in rows], dtype=np.int64)
        y = normal_scores(np.array([r[1] for r in rows], dtype=np.float64))
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

    def _candidates(self) -> np.ndarray:
        """Random architectures and the neighbours of the best results, unseen, each once, in draw order."""
        usable = sorted((r for r in self.ledger.results if r.usable), key=lambda r: (-r.reward, r.index))
        parts = [self.rng.integers(0, self.sizes, size=(self.settings.candidates, len(self.sizes)))]
        parts += [self._neighbours(self.indices[r.index]) for r in usable[:TOP_RESULTS]]
        pool = self._unseen(np.concatenate(parts))
        _, first = np.unique(pool, axis=0, return_index=True)
        return pool[np.sort(first)]

    def _climb(self, row: np.ndarray, value: float) -> tuple[np.ndarray, float]:
        """Move to the unseen neighbour of highest expected improvement while it improves."""
        for _ in range(len(self.sizes)):
            near = self._neighbours(tuple(int(v) for v in row))
            if not len(near):
                break
            gains = self.model.expected_improvement(near)
            best = int(np.argmax(gains))
            if gains[best] <= value:
                break
            row, value = near[best], float(gains[best])
        return row, value

    def _parent(self, chosen: tuple[int, ...]) -> tuple[int, ...]:
        """The ask index of the best evaluated architecture one decision away, if there is one."""
        near = [
            r
            for r in self.ledger.results
            if r.usable and sum(a != b for a, b in zip(self.indices[r.index], chosen, strict=True)) == 1
        ]
        if not near:
            return ()
        best = max(near, key=lambda r: (r.reward, -r.index))
        return (self.asked_at[self.indices[best.index]],)

    def start_from(self, architectures: Sequence[Architecture]) -> None:
        """The initial samples start with these, so the first fit sees them."""
        self.ledger.first.extend(self.grid.from_indices(self.grid.indices(a)) for a in architectures)

    # -- ask/tell -----------------------------------------------------------------------------
    def _propose(self) -> tuple[int, ...] | None:
        if self.asked < self.settings.initial_samples or len(self.ledger.results) < self.settings.initial_samples:
            return self._design_row(self.asked)  # parallel trials: no model on fewer results than the design has
        if not self._fit():
            return None
        pool = self._candidates()
        if not len(pool):
            return None
        gains = self.model.expected_improvement(pool)
        best, best_gain = pool[int(np.argmax(gains))], float(gains.max())
        for i in np.argsort(-gains, kind="stable")[:CLIMBS]:
            row, gain = self._climb(pool[i], float(gains[i]))
            if gain > best_gain:
                best, best_gain = row, gain
        chosen = tuple(int(v) for v in best)
        self.proposed_from = self._parent(chosen)
        return chosen

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
            (tuple(self.model.weights.tolist()), tuple(self.model.order_weights.tolist())),
            (self.model.noise, self.fitted_on),
            rng_state(self.rng),
        )

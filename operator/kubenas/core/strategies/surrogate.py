"""A Gaussian-process surrogate over architectures, in numpy: the model of the progressive strategy.

Architectures are index vectors over a finite grid (one choice index per decision). The kernel is
``exp(-sum_d w_d [a_d != b_d])``, the product over decisions of a "same choice or not" kernel with
one weight per decision (ARD, as Optuna's GP sampler has for categorical parameters): it needs no
notion of distance between choices, so it fits any categorical table, and it still models
interactions of every order.

Ordered decisions (numbers: widths, depths, a learning rate's grid) may also carry a distance:
``exp(-sum_d w_d [a_d != b_d] - sum_o u_o (p_o(a) - p_o(b))^2)``, where ``p_o`` is a choice's rank
among the decision's values scaled to [0, 1]. Whether the order helps is a question for the data,
not an assumption: the marginal likelihood chooses between the kernel without the distance and the
kernel with it (the same first step that picks the lengthscale), the order paying BIC's charge for
one more hyperparameter, so numbers used as mere labels leave the model as it was.

One lengthscale and the noise are first chosen by marginal likelihood over a small fixed grid (one
eigendecomposition per lengthscale); then the weights and the noise are refined by a fixed number of
gradient steps on the marginal likelihood. Both are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import sqrt
from statistics import NormalDist

import numpy as np

from kubenas.core.strategies.ledger import best_and_recent

LENGTHSCALES = (0.5, 1.0, 2.0, 4.0, 8.0)
NOISES = (1e-3, 1e-2, 1e-1, 1.0)
#: ordered decisions, in the first fit: the correlation lengths tried for the rank distance (in rank
#: units, the whole range being 1), beside not using the order at all
ORDER_LENGTHS = (0.25, 0.5, 1.0)
#: with the distance, the share of a mismatch's weight that stays on an ordered decision (refined from there)
ORDER_MISMATCH = 0.1
#: Adam steps and step size refining the per-decision weights and the noise from the isotropic fit
ARD_STEPS = 50
ARD_RATE = 0.1
#: standard deviation of the normal prior on each log weight, centred on the isotropic fit
ARD_PRIOR = 1.0
#: results the per-decision weights are refined on at most (each step is cubic in them)
ARD_POINTS = 200


class OneHot:
    """Index vectors → one-hot rows, so Hamming similarities are one matrix product."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.width = int(self.sizes.sum())

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        rows = np.zeros((len(indices), self.width))
        rows[np.arange(len(indices))[:, None], indices + self.offsets] = 1.0
        return rows


class HammingGP:
    """GP regression on standardised rewards with an exponential Hamming kernel, one weight per decision.

    ``positions`` gives, for each decision, its choices' places in [0, 1] when the decision is
    ordered (``None`` when it is not): see :func:`rank_positions`.
    """

    def __init__(self, sizes: Sequence[int], positions: Sequence[Sequence[float] | None] | None = None) -> None:
        self.encode = OneHot(sizes)
        self.decisions = len(sizes)
        self.columns = np.repeat(np.arange(len(sizes)), np.asarray(sizes, dtype=np.int64))
        self.weights = np.ones(len(sizes))
        self.noise = 1e-2
        places = list(positions) if positions is not None else [None] * len(sizes)
        #: the ordered decisions, and each one's choice index -> place
        self.ordered = [d for d, p in enumerate(places) if p is not None]
        self._places = [np.asarray(places[d], dtype=np.float64) for d in self.ordered]
        #: one weight per ordered decision on its squared rank distance; all zero while the order is unused
        self.order_weights = np.zeros(len(self.ordered))

    def _features(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        places = (
            np.stack([p[indices[:, d]] for p, d in zip(self._places, self.ordered, strict=True)], axis=1)
            if self.ordered
            else np.zeros((len(indices), 0))
        )
        return self.encode(indices), places

    def _kernel(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        exponent = self.weights.sum() - (a[0] * self.weights[self.columns]) @ b[0].T
        if self.order_weights.any():
            u = self.order_weights
            exponent = exponent + (a[1] ** 2 @ u)[:, None] + (b[1] ** 2 @ u)[None, :] - 2.0 * (a[1] * u) @ b[1].T
        return np.exp(-exponent)

    def select_hyperparameters(self, indices: np.ndarray, rewards: np.ndarray) -> None:
        """Pick the lengthscale, the use of the order (none, or a correlation length) and the noise of
        highest marginal likelihood on this data, then refine one weight per decision (and per ordered
        decision its distance weight) and the noise by gradient ascent on the marginal likelihood."""
        x, places = self._features(indices)
        z = self._standardise(rewards)
        hamming = self.decisions - x @ x.T
        ordered_mismatch = np.zeros_like(hamming)
        for d in self.ordered:
            ordered_mismatch += indices[:, d][:, None] != indices[:, d][None, :]
        distance = _rank_distances(places).sum(axis=0)
        best = -np.inf
        # the order is one more hyperparameter: it must gain what BIC charges for one (half the log of
        # the data size), or numbers used as labels would pick up a spurious order by chance
        charge = 0.5 * np.log(len(z))
        for order_length in (None, *ORDER_LENGTHS) if self.ordered else (None,):
            for lengthscale in LENGTHSCALES:
                exponent = hamming / lengthscale
                if order_length is not None:
                    exponent = exponent - (1.0 - ORDER_MISMATCH) * ordered_mismatch / lengthscale
                    exponent = exponent + distance / order_length**2
                eigenvalues, vectors = np.linalg.eigh(np.exp(-exponent))
                projected = (vectors.T @ z) ** 2
                for noise in NOISES:
                    e = np.maximum(eigenvalues, 0.0) + noise
                    likelihood = -0.5 * float((projected / e).sum()) - 0.5 * float(np.log(e).sum())
                    if order_length is not None:
                        likelihood -= charge
                    if likelihood > best:
                        best, chosen, self.noise = likelihood, (lengthscale, order_length), noise
        lengthscale, order_length = chosen
        self.weights = np.full(self.decisions, 1.0 / lengthscale)
        self.order_weights = np.zeros(len(self.ordered))
        if order_length is not None:
            self.weights[self.ordered] *= ORDER_MISMATCH
            self.order_weights += 1.0 / order_length**2
        keep = best_and_recent(z.tolist(), ARD_POINTS)
        self._refine(indices[keep], z[keep])

    def _refine(self, indices: np.ndarray, z: np.ndarray) -> None:
        """Adam on the log weights and log noise (marginal likelihood plus a normal prior on the log
        weights around the isotropic fit, so a decision the data barely constrain keeps that weight).
        The distance weights of ordered decisions are refined alike when the first fit chose to use
        the order, and stay zero otherwise.

        Why per-decision weights: on architecture tables a few decisions matter far more than the
        others (NAS-Bench-201's last edge); one lengthscale for all blurs them. Gradient steps rather
        than a library optimiser: the operator's image has numpy only, and a fixed number of steps
        from a fixed start is deterministic, which a replay needs."""
        mismatch = (indices[:, None, :] != indices[None, :, :]).transpose(2, 0, 1).astype(np.float64)
        weights = self.weights
        if self.order_weights.any():
            mismatch = np.concatenate([mismatch, _rank_distances(self._features(indices)[1])])
            weights = np.concatenate([weights, self.order_weights])
        theta = np.concatenate([np.log(weights), [np.log(self.noise)]])
        centre = theta[:-1].copy()
        m = np.zeros_like(theta)
        v = np.zeros_like(theta)
        n = len(z)
        for step in range(1, ARD_STEPS + 1):
            w, noise = np.exp(theta[:-1]), np.exp(theta[-1])
            kf = np.exp(-np.tensordot(w, mismatch, axes=1))
            k = kf + noise * np.eye(n)
            try:
                chol = np.linalg.cholesky(k)
            except np.linalg.LinAlgError:
                break
            inv = np.linalg.solve(chol.T, np.linalg.solve(chol, np.eye(n)))
            alpha = inv @ z
            outer = np.outer(alpha, alpha) - inv  # dL/dK, times 2
            grad = np.empty_like(theta)
            grad[:-1] = -0.5 * w * np.einsum("ij,dij->d", outer * kf, mismatch)
            grad[:-1] -= (theta[:-1] - centre) / ARD_PRIOR**2
            grad[-1] = 0.5 * noise * np.trace(outer)
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad * grad
            theta = theta + ARD_RATE * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
            theta[-1] = max(theta[-1], np.log(1e-4))
        weights, self.noise = np.exp(theta[:-1]), float(np.exp(theta[-1]))
        self.weights = weights[: self.decisions]
        if self.order_weights.any():
            self.order_weights = weights[self.decisions :]

    def fit(self, indices: np.ndarray, rewards: np.ndarray) -> None:
        self._x = self._features(indices)
        z = self._standardise(rewards)
        self.best_z = float(z.max())
        k = self._kernel(self._x, self._x) + self.noise * np.eye(len(z))
        # the inverse factor once per fit: every variance below is then a product, not a solve
        # (an ask scores candidates many times on one fit)
        self._chol_inv = np.linalg.inv(np.linalg.cholesky(k))
        self._alpha = self._chol_inv.T @ (self._chol_inv @ z)

    def _standardise(self, rewards: np.ndarray) -> np.ndarray:
        self._mean = float(rewards.mean())
        self._scale = float(rewards.std()) or 1.0
        return (rewards - self._mean) / self._scale

    def standardised(self, reward: float) -> float:
        return (reward - self._mean) / self._scale

    def rewards(self, standardised: np.ndarray) -> np.ndarray:
        """Standardised values (a posterior mean) back in reward units."""
        return standardised * self._scale + self._mean

    def mean(self, indices: np.ndarray) -> np.ndarray:
        """Posterior mean (standardised units) at each candidate."""
        return self._kernel(self._features(indices), self._x) @ self._alpha

    def mean_std(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cross = self._kernel(self._features(indices), self._x)
        v = self._chol_inv @ cross.T
        return cross @ self._alpha, np.sqrt(np.maximum(1.0 - (v * v).sum(axis=0), 1e-12))

    def expected_improvement(self, indices: np.ndarray) -> np.ndarray:
        """Expected improvement over the best standardised reward seen."""
        mean, std = self.mean_std(indices)
        u = (mean - self.best_z) / std
        cdf = 0.5 * (1.0 + _erf(u / sqrt(2.0)))
        pdf = np.exp(-0.5 * u * u) / sqrt(2.0 * np.pi)
        return (mean - self.best_z) * cdf + std * pdf


def _rank_distances(places: np.ndarray) -> np.ndarray:
    """Squared rank distances between every two rows, one n-by-n matrix per ordered decision."""
    return ((places[:, None, :] - places[None, :, :]) ** 2).transpose(2, 0, 1)


def rank_positions(values: Sequence[object]) -> list[float] | None:
    """Each value's rank among ``values`` scaled to [0, 1], when they are three or more distinct
    numbers (booleans and strings are labels, and two values have no order to learn); else None.

    Ranks rather than the values themselves: a width of 16, 32, 64, 128 or a log-spaced learning
    rate grid is then evenly spaced, and no scale has to be guessed."""
    if len(values) < 3 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return None
    numbers = [float(v) for v in values]  # type: ignore[arg-type]
    if len(set(numbers)) != len(numbers) or any(v != v for v in numbers):
        return None
    order = sorted(range(len(numbers)), key=numbers.__getitem__)
    places = [0.0] * len(numbers)
    for rank, i in enumerate(order):
        places[i] = rank / (len(numbers) - 1)
    return places


def normal_scores(values: np.ndarray) -> np.ndarray:
    """Each value replaced by the normal quantile of its rank (ties share their mean rank).

    Why: architecture tables have long tails of broken cells (10 % accuracy beside 91 %); on raw
    values the GP spends itself on that gap and cannot tell the good cells apart. Ranks keep only
    the order, which is all a search needs, and the normal quantiles give the GP a Gaussian margin.
    """
    n = len(values)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n, dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inverse, weights=ranks) / counts)[inverse]
    normal = NormalDist()
    return np.array([normal.inv_cdf((r + 0.5) / n) for r in ranks.tolist()])


def _erf(x: np.ndarray) -> np.ndarray:
    """Vectorised error function (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7): numpy has none."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))

"""A Gaussian-process surrogate over architectures, in numpy: the model of the progressive strategy.

Architectures are index vectors over a finite grid (one choice index per decision). The kernel is
``exp(-sum_d w_d [a_d != b_d])``, the product over decisions of a "same choice or not" kernel with
one weight per decision (ARD, as Optuna's GP sampler has for categorical parameters): it needs no
notion of distance between choices, so it fits any categorical table, and it still models
interactions of every order. One lengthscale and the noise are first chosen by marginal likelihood
over a small fixed grid (one eigendecomposition per lengthscale); then the weights and the noise
are refined by a fixed number of gradient steps on the marginal likelihood. Both are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import sqrt
from statistics import NormalDist

import numpy as np

from kubenas.core.strategies.ledger import best_and_recent

LENGTHSCALES = (0.5, 1.0, 2.0, 4.0, 8.0)
NOISES = (1e-3, 1e-2, 1e-1, 1.0)
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
    """GP regression on standardised rewards with an exponential Hamming kernel, one weight per decision."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.encode = OneHot(sizes)
        self.decisions = len(sizes)
        self.columns = np.repeat(np.arange(len(sizes)), np.asarray(sizes, dtype=np.int64))
        self.weights = np.ones(len(sizes))
        self.noise = 1e-2

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-(self.weights.sum() - (a * self.weights[self.columns]) @ b.T))

    def select_hyperparameters(self, indices: np.ndarray, rewards: np.ndarray) -> None:
        """Pick the (lengthscale, noise) pair of highest marginal likelihood on this data, then
        refine one weight per decision and the noise by gradient ascent on the marginal likelihood."""
        x = self.encode(indices)
        z = self._standardise(rewards)
        hamming = self.decisions - x @ x.T
        best = -np.inf
        for lengthscale in LENGTHSCALES:
            eigenvalues, vectors = np.linalg.eigh(np.exp(-hamming / lengthscale))
            projected = (vectors.T @ z) ** 2
            for noise in NOISES:
                e = np.maximum(eigenvalues, 0.0) + noise
                likelihood = -0.5 * float((projected / e).sum()) - 0.5 * float(np.log(e).sum())
                if likelihood > best:
                    best, chosen, self.noise = likelihood, lengthscale, noise
        self.weights = np.full(self.decisions, 1.0 / chosen)
        keep = best_and_recent(z.tolist(), ARD_POINTS)
        self._refine(indices[keep], z[keep])

    def _refine(self, indices: np.ndarray, z: np.ndarray) -> None:
        """Adam on the log weights and log noise (marginal likelihood plus a normal prior on the log
        weights around the isotropic fit, so a decision the data barely constrain keeps that weight).

        Why per-decision weights: on architecture tables a few decisions matter far more than the
        others (NAS-Bench-201's last edge); one lengthscale for all blurs them. Gradient steps rather
        than a library optimiser: the operator's image has numpy only, and a fixed number of steps
        from a fixed start is deterministic, which a replay needs."""
        mismatch = (indices[:, None, :] != indices[None, :, :]).transpose(2, 0, 1).astype(np.float64)
        theta = np.concatenate([np.log(self.weights), [np.log(self.noise)]])
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
        self.weights, self.noise = np.exp(theta[:-1]), float(np.exp(theta[-1]))

    def fit(self, indices: np.ndarray, rewards: np.ndarray) -> None:
        self._x = self.encode(indices)
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
        return self._kernel(self.encode(indices), self._x) @ self._alpha

    def mean_std(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cross = self._kernel(self.encode(indices), self._x)
        v = self._chol_inv @ cross.T
        return cross @ self._alpha, np.sqrt(np.maximum(1.0 - (v * v).sum(axis=0), 1e-12))

    def expected_improvement(self, indices: np.ndarray) -> np.ndarray:
        """Expected improvement over the best standardised reward seen."""
        mean, std = self.mean_std(indices)
        u = (mean - self.best_z) / std
        cdf = 0.5 * (1.0 + _erf(u / sqrt(2.0)))
        pdf = np.exp(-0.5 * u * u) / sqrt(2.0 * np.pi)
        return (mean - self.best_z) * cdf + std * pdf


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

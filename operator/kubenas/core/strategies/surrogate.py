"""A Gaussian-process surrogate over architectures, in numpy: the model of the progressive strategy.

Architectures are index vectors over a finite grid (one choice index per decision). The kernel is
``exp(-hamming(a, b) / lengthscale)``, the product over decisions of a "same choice or not" kernel:
it needs no notion of distance between choices, so it fits any categorical table, and it still
models interactions of every order. The lengthscale and the noise are chosen by marginal likelihood
over a small fixed grid (one eigendecomposition per lengthscale), which is deterministic and takes
milliseconds at the sizes a search reaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import sqrt

import numpy as np

LENGTHSCALES = (0.5, 1.0, 2.0, 4.0, 8.0)
NOISES = (1e-3, 1e-2, 1e-1, 1.0)


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
    """GP regression on standardised rewards with an exponential Hamming kernel."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.encode = OneHot(sizes)
        self.decisions = len(sizes)
        self.lengthscale = 1.0
        self.noise = 1e-2

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-(self.decisions - a @ b.T) / self.lengthscale)

    def select_hyperparameters(self, indices: np.ndarray, rewards: np.ndarray) -> None:
        """Pick the (lengthscale, noise) pair of highest marginal likelihood on this data."""
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
                    best, self.lengthscale, self.noise = likelihood, lengthscale, noise

    def fit(self, indices: np.ndarray, rewards: np.ndarray) -> None:
        self._x = self.encode(indices)
        z = self._standardise(rewards)
        self.best_z = float(z.max())
        k = self._kernel(self._x, self._x) + self.noise * np.eye(len(z))
        self._chol = np.linalg.cholesky(k)
        self._alpha = np.linalg.solve(self._chol.T, np.linalg.solve(self._chol, z))

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
        v = np.linalg.solve(self._chol, cross.T)
        return cross @ self._alpha, np.sqrt(np.maximum(1.0 - (v * v).sum(axis=0), 1e-12))

    def expected_improvement(self, indices: np.ndarray) -> np.ndarray:
        """Expected improvement over the best standardised reward seen."""
        mean, std = self.mean_std(indices)
        u = (mean - self.best_z) / std
        cdf = 0.5 * (1.0 + _erf(u / sqrt(2.0)))
        pdf = np.exp(-0.5 * u * u) / sqrt(2.0 * np.pi)
        return (mean - self.best_z) * cdf + std * pdf


def _erf(x: np.ndarray) -> np.ndarray:
    """Vectorised error function (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7): numpy has none."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))

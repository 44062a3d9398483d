"""Synthetic benchmark tables: NK landscapes in the tabular-benchmark format.

Why: a strategy tuned on NAS-Bench-201 alone may only have learnt that table. An NK landscape
(Kauffman) is the classic tunable rugged function over categorical decisions: each decision adds a
random contribution that depends on its own choice and on the choices of ``interactions`` other
decisions, so ``interactions=0`` is separable and larger values give more local optima. The table
has a noisy ``signal`` column (what a search sees, like a validation accuracy) and a noise-free
``report`` column (like a test accuracy), both scaled to 50..95.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def nk_table(
    path: str | Path,
    choices: Sequence[int] = (4, 4, 3, 5, 4, 3, 4),
    interactions: int = 2,
    noise: float = 0.01,
    seed: int = 0,
) -> Path:
    """Write an NK-landscape table with one ``x_d<i>`` column per entry of ``choices``; returns the path."""
    rng = np.random.default_rng(seed)
    n = len(choices)
    k = min(interactions, n - 1)
    links = [sorted(rng.choice([j for j in range(n) if j != i], size=k, replace=False).tolist()) for i in range(n)]
    parts = [rng.random(tuple([choices[i]] + [choices[j] for j in links[i]])) for i in range(n)]
    grid = np.array(list(itertools.product(*[range(c) for c in choices])), dtype=np.int64)
    fitness = np.mean([parts[i][(grid[:, i], *(grid[:, j] for j in links[i]))] for i in range(n)], axis=0)
    scaled = (fitness - fitness.min()) / (np.ptp(fitness) or 1.0)
    report = 50.0 + 45.0 * scaled
    signal = report + rng.normal(0.0, 45.0 * noise, size=len(report))
    out = Path(path)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([f"x_d{i}" for i in range(n)] + ["signal", "report"])
        for row, s, r in zip(grid.tolist(), signal.tolist(), report.tolist(), strict=True):
            writer.writerow([f"v{v}" for v in row] + [f"{s:.4f}", f"{r:.4f}"])
    return out


#: table shapes for checking strategies off NAS-Bench-201: (name, choices, interactions, noise, seed).
#: Why these: more decisions than NAS-Bench-201's six, decisions of 2 to 8 choices side by side,
#: separable to strongly interacting landscapes, and a signal noisy enough to mislead a greedy search.
SUITE: tuple[tuple[str, tuple[int, ...], int, float, int], ...] = (
    ("nk7-k2", (4, 4, 3, 5, 4, 3, 4), 2, 0.01, 0),
    ("nk10-mixed-k3", (2, 3, 2, 4, 3, 2, 5, 2, 3, 4), 3, 0.01, 1),
    ("nk8-noisy-k1", (6, 2, 3, 8, 2, 4, 3, 2), 1, 0.05, 2),
    ("nk12-k4", (2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3), 4, 0.02, 3),
)


def write_suite(directory: str | Path) -> list[Path]:
    """Write every table of :data:`SUITE` as ``<name>.csv`` into ``directory``; returns the paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    return [nk_table(out / f"{name}.csv", choices, k, noise, seed) for name, choices, k, noise, seed in SUITE]

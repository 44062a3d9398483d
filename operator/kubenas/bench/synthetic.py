"""Synthetic benchmark tables: NK landscapes in the tabular-benchmark format.

Why: a strategy tuned on NAS-Bench-201 alone may only have learnt that table. An NK landscape
(Kauffman) is the classic tunable rugged function over categorical decisions: each decision adds a
random contribution that depends on its own choice and on the choices of ``interactions`` other
decisions, so ``interactions=0`` is separable and larger values give more local optima. The table
has a noisy ``signal`` column (what a search sees, like a validation accuracy) and a noise-free
``report`` column (like a test accuracy), both scaled to 50..95.

Architecture spaces also hold ordered decisions (widths, depths, a learning rate's grid), along which
near values score alike. An ``ordered`` decision's contributions are a random walk along its choices
(independent draws along the other axes), and its column holds numbers (8, 16, 24, ...); the other
decisions' columns hold labels (``v0``, ``v1``, ...) or, with ``numbered``, bare numbers whose order
means nothing: a searcher that assumes numbers are ordered is checked on that too.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def nk_table(
    path: str | Path,
    choices: Sequence[int] = (4, 4, 3, 5, 4, 3, 4),
    interactions: int = 2,
    noise: float = 0.01,
    seed: int = 0,
    ordered: Sequence[int] = (),
    numbered: bool = False,
) -> Path:
    """Write an NK-landscape table with one ``x_d<i>`` column per entry of ``choices``; returns the path.

    ``ordered`` lists the decisions (by position) that are ordered; ``numbered`` writes the other
    decisions' choices as numbers rather than labels."""
    rng = np.random.default_rng(seed)
    n = len(choices)
    k = min(interactions, n - 1)
    links = [sorted(rng.choice([j for j in range(n) if j != i], size=k, replace=False).tolist()) for i in range(n)]
    parts = [rng.random(tuple([choices[i]] + [choices[j] for j in links[i]])) for i in range(n)]
    smooth = set(ordered)
    for i in range(n):
        axes = [i, *links[i]]
        if not smooth & set(axes):
            continue  # unchanged draws: a table without ordered decisions is what it always was
        walk = rng.normal(size=parts[i].shape)
        for axis, d in enumerate(axes):
            if d in smooth:
                walk = np.cumsum(walk, axis=axis)
        parts[i] = (walk - walk.min()) / (np.ptp(walk) or 1.0)
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
            writer.writerow([_label(d, v, smooth, numbered) for d, v in enumerate(row)] + [f"{s:.4f}", f"{r:.4f}"])
    return out


def _label(decision: int, choice: int, ordered: set[int], numbered: bool) -> str:
    if decision in ordered:
        return str(8 * (choice + 1))  # like channel counts: 8, 16, 24, ...
    return str(choice) if numbered else f"v{choice}"


@dataclass(frozen=True)
class Shape:
    """One generated table: the arguments of :func:`nk_table` under a name."""

    name: str
    choices: tuple[int, ...]
    interactions: int
    noise: float
    seed: int
    ordered: tuple[int, ...] = ()
    numbered: bool = False


#: table shapes for checking strategies off NAS-Bench-201. Why these: more decisions than
#: NAS-Bench-201's six, decisions of 2 to 8 choices side by side, separable to strongly interacting
#: landscapes, a signal noisy enough to mislead a greedy search; then ordered decisions: a space of
#: widths alone (like NATS-Bench's size space, 8 widths on each of 5 layers), one that mixes labelled
#: operations with widths, and one whose choices are numbers with no order.
SUITE: tuple[Shape, ...] = (
    Shape("nk7-k2", (4, 4, 3, 5, 4, 3, 4), 2, 0.01, 0),
    Shape("nk10-mixed-k3", (2, 3, 2, 4, 3, 2, 5, 2, 3, 4), 3, 0.01, 1),
    Shape("nk8-noisy-k1", (6, 2, 3, 8, 2, 4, 3, 2), 1, 0.05, 2),
    Shape("nk12-k4", (2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3), 4, 0.02, 3),
    Shape("widths5-k2", (8, 8, 8, 8, 8), 2, 0.01, 4, ordered=(0, 1, 2, 3, 4)),
    Shape("ops-widths6-k2", (5, 5, 5, 8, 6, 8), 2, 0.02, 5, ordered=(3, 4, 5)),
    Shape("nk7-numbered-k2", (5, 6, 4, 8, 3, 4, 3), 2, 0.01, 6, numbered=True),
)


def write_suite(directory: str | Path) -> list[Path]:
    """Write every table of :data:`SUITE` as ``<name>.csv`` into ``directory``; returns the paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    return [
        nk_table(out / f"{t.name}.csv", t.choices, t.interactions, t.noise, t.seed, t.ordered, t.numbered)
        for t in SUITE
    ]

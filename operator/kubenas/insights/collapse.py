"""The collapse guard of weight-sharing search: which operations the chosen cells hold.

Differentiable and controller-driven one-shot searches are known to drift to cells made of
parameter-free operations (skip connections, pooling, ``none``): on NAS-Bench-201 DARTS ends near
54 % on CIFAR-10 that way. The guard is a plain count: the share of each operation over the edges
(and chain layers) of the chosen architectures and the share of parameter-free ones, to be read
against the same figures over everything the search evaluated or over the whole space.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from kubenas.insights.genotype import parameter_free, structural


def operation_mix(architectures: Sequence[Mapping[str, Any]], operations: Sequence[str]) -> dict[str, Any]:
    """Share of each of ``operations`` over the structural decisions of ``architectures``, and the share
    of parameter-free ones (``none`` included); zeros when there is nothing to count."""
    ops = [str(v) for arch in architectures for k, v in arch.items() if structural(k)]
    counts = Counter(ops)
    total = max(1, len(ops))
    return {
        "operations": {op: round(counts[op] / total, 4) for op in operations},
        "parameter_free": round(sum(parameter_free(op) for op in ops) / total, 4),
        "architectures": len(architectures),
    }

"""An architecture as a small graph and as one line of text.

The shape is read from the decision names of the trial contract, so it works for a space built from
``spec.searchSpace`` and for a benchmark table alike: ``edge_<to>_<from>`` decisions form a
NAS-Bench-201-style cell (nodes are feature maps, each edge carries one operation, ``none`` means no
edge), ``layer_<i>`` decisions form a chain (each layer an edge from one feature map to the next);
every other decision is a hyperparameter, shown beside the graph.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EDGE = re.compile(r"^edge_(\d+)_(\d+)$")
LAYER = re.compile(r"^layer_(\d+)$")
#: operations that mean "no connection" on a cell edge
ABSENT = frozenset({"none", "zero"})
#: operations without weights besides the absent ones
_FREE_WORDS = ("skip", "identity", "pool")


def parameter_free(op: Any) -> bool:
    """Whether an operation has no weights (none, skip_connect, identity, pooling)."""
    text = str(op).lower()
    return text in ABSENT or any(w in text for w in _FREE_WORDS)


def is_conv(op: Any) -> bool:
    return "conv" in str(op).lower()


@dataclass(frozen=True)
class Graph:
    """Nodes (labels, in order) and edges ``(from, to, operation)`` between node positions."""

    kind: str  # "cell" | "chain" | "none"
    nodes: tuple[str, ...]
    edges: tuple[tuple[int, int, str], ...]
    hyperparameters: tuple[tuple[str, Any], ...]


def structural(name: str) -> bool:
    """Whether a decision is part of the graph (a cell edge or a chain layer)."""
    return bool(EDGE.match(name) or LAYER.match(name))


def graph_of(architecture: Mapping[str, Any]) -> Graph:
    """The graph of an architecture: its cell if it has edge decisions, else its layer chain."""
    edges = {(int(m[2]), int(m[1])): v for k, v in architecture.items() if (m := EDGE.match(k))}
    layers = {int(m[1]): v for k, v in architecture.items() if (m := LAYER.match(k))}
    hyper = tuple((k, v) for k, v in architecture.items() if not structural(k))
    if edges:
        n = 1 + max(max(pair) for pair in edges)
        nodes = tuple(["in", *(str(i) for i in range(1, n - 1)), "out"])
        kept = tuple((s, t, str(op)) for (s, t), op in sorted(edges.items(), key=lambda kv: (kv[0][1], kv[0][0])))
        return Graph("cell", nodes, tuple(e for e in kept if e[2] not in ABSENT), hyper)
    if layers:
        order = sorted(layers)
        nodes = tuple(["in", *(f"h{i}" for i in order[:-1]), "out"])
        return Graph("chain", nodes, tuple((i, i + 1, str(layers[k])) for i, k in enumerate(order)), hyper)
    return Graph("none", (), (), hyper)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def genotype(architecture: Mapping[str, Any]) -> str:
    """One line: the NAS-Bench-201 string of a cell, ``op > op > ...`` of a chain, then hyperparameters."""
    edges = {(int(m[1]), int(m[2])): v for k, v in architecture.items() if (m := EDGE.match(k))}
    layers = {int(m[1]): v for k, v in architecture.items() if (m := LAYER.match(k))}
    parts = []
    if edges:
        n = 1 + max(to for to, _ in edges)
        groups = ["|" + "|".join(f"{edges.get((i, j), 'none')}~{j}" for j in range(i)) + "|" for i in range(1, n)]
        parts.append("+".join(groups))
    if layers:
        parts.append(" > ".join(str(layers[i]) for i in sorted(layers)))
    parts += [f"{k}={_short(v)}" for k, v in architecture.items() if not structural(k)]
    return "  ".join(parts)


def longest_conv_path(architecture: Mapping[str, Any]) -> int:
    """Most convolutions on one path from the input to the output (absent edges cut the path).

    For a chain that is its number of conv layers; for a cell, the deepest stack of convolutions a
    feature map can go through. 0 when the output is not reached at all.
    """
    g = graph_of(architecture)
    if g.kind == "none":
        return 0
    best: list[int | None] = [None] * len(g.nodes)
    best[0] = 0
    for s, t, op in sorted(g.edges, key=lambda e: e[1]):  # node order is topological
        if best[s] is None:
            continue
        depth = best[s] + (1 if is_conv(op) else 0)  # type: ignore[operator]
        if best[t] is None or depth > best[t]:  # type: ignore[operator]
            best[t] = depth
    return best[-1] or 0

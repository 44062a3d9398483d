"""What an architecture says, read from its decisions: a cell, a layer chain, hyperparameters.

The trial contract hands the trainer a flat mapping (``edge_<to>_<from>``, ``layer_<i>``, other
names; ``aug_*`` decisions are an augmentation policy, read by :mod:`kubenas_trainer.policy`). This
module turns it into a :class:`Candidate` and checks, before any data is loaded, that the candidate
can be built at all, so an unbuildable one fails in milliseconds with exit code 3.

It reads ``KUBENAS_SEARCH_SPACE`` only for the shape (the cell's node count, the chain's length) and
falls back to inferring it from the decision names, so the trainer also runs without it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubenas_trainer.errors import BadCandidate
from kubenas_trainer.ops import canonical_op
from kubenas_trainer.policy import AUG_RE

EDGE_RE = re.compile(r"^edge_(\d+)_(\d+)$")
LAYER_RE = re.compile(r"^layer_(\d+)$")

Edge = tuple[int, int]

RESNET_CELL: dict[str, str] = {
    "edge_1_0": "nor_conv_3x3",
    "edge_2_0": "none",
    "edge_2_1": "nor_conv_3x3",
    "edge_3_0": "skip_connect",
    "edge_3_1": "none",
    "edge_3_2": "skip_connect",
}
"""NAS-Bench-201's ResNet cell (two 3x3 convolutions with a skip around them): the usual reference point."""


@dataclass(frozen=True)
class Candidate:
    """One architecture, split by family. ``edges`` maps (to, from) to a registry operation name."""

    nodes: int | None = None
    edges: dict[Edge, str] = field(default_factory=dict)
    layers: tuple[str, ...] = ()
    hyperparameters: dict[str, Any] = field(default_factory=dict)


def _space_size(space: Mapping[str, Any] | None, family: str, key: str) -> int | None:
    """``space[family][key]`` as an int, or None when the space does not define that family."""
    if not space or not isinstance(space.get(family), Mapping):
        return None
    value = space[family].get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadCandidate(f"searchSpace.{family}.{key}", f"must be a positive integer, got {value!r}")
    return value


def parse_candidate(architecture: Mapping[str, Any], space: Mapping[str, Any] | None = None) -> Candidate:
    """Split ``architecture`` into families; a missing, extra or unknown decision raises BadCandidate."""
    edges: dict[Edge, str] = {}
    layers: dict[int, str] = {}
    hyper: dict[str, Any] = {}
    for name, value in architecture.items():
        if m := EDGE_RE.match(name):
            to, src = int(m.group(1)), int(m.group(2))
            if src >= to:
                raise BadCandidate(f"architecture.{name}", "an edge must go from a lower node to a higher one")
            edges[(to, src)] = canonical_op(value, f"architecture.{name}")
        elif m := LAYER_RE.match(name):
            layers[int(m.group(1))] = canonical_op(value, f"architecture.{name}")
        elif AUG_RE.match(name):
            continue  # an augmentation policy, read by kubenas_trainer.policy
        else:
            hyper[name] = value

    nodes = _space_size(space, "cell", "nodes")
    if nodes is None and edges:
        nodes = max(to for to, _ in edges) + 1
    if nodes is not None:
        if nodes < 2:
            raise BadCandidate("searchSpace.cell.nodes", "a cell needs at least 2 nodes")
        expected = {(to, src) for to in range(1, nodes) for src in range(to)}
        _check_names(set(edges), expected, lambda e: f"edge_{e[0]}_{e[1]}")

    length = _space_size(space, "layers", "layers")
    if length is None and layers:
        length = max(layers) + 1
    if length is not None:
        _check_names(set(layers), set(range(length)), lambda i: f"layer_{i}")
    chain = tuple(layers[i] for i in range(length or 0))
    return Candidate(nodes=nodes, edges=edges, layers=chain, hyperparameters=hyper)


def _check_names(given: set[Any], expected: set[Any], name: Any) -> None:
    missing = sorted(expected - given)
    if missing:
        raise BadCandidate(f"architecture.{name(missing[0])}", "is missing")
    extra = sorted(given - expected)
    if extra:
        raise BadCandidate(f"architecture.{name(extra[0])}", "is not a decision of this search space")


def live_edges(nodes: int, edges: Mapping[Edge, str]) -> list[Edge]:
    """The edges that carry signal from the cell's input (node 0) to its output (node ``nodes - 1``).

    ``none`` edges carry nothing, and so does any edge leaving a node the input cannot reach or entering
    a node that cannot reach the output; dropping them changes no output and saves their compute. When
    the output is unreachable from the input the cell's output ignores its input, which no training can
    fix: that is the bad-candidate case. A cell whose output is the *sum of zero* edges but still reached
    through e.g. a skip elsewhere is fine.
    """
    real = [e for e, op in edges.items() if op != "none"]
    forward = {0}
    for to in range(1, nodes):
        if any(src in forward for t, src in real if t == to):
            forward.add(to)
    output = nodes - 1
    if output not in forward:
        raise BadCandidate(
            "architecture",
            f"the cell has no path from its input (node 0) to its output (node {output}) "
            "through operations other than none",
        )
    backward = {output}
    for src in range(output - 1, -1, -1):
        if any(to in backward for to, s in real if s == src):
            backward.add(src)
    return sorted(((to, src) for to, src in real if src in forward and to in backward), key=lambda e: (e[0], e[1]))

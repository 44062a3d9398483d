"""The supernet of a search space: one network that holds every candidate, for single-path one-shot search.

Every cell edge (and every chain layer) holds one module per candidate operation of the space; a
*path* picks one operation per edge, and the forward pass runs only that one (SPOS, Guo et al. 2020).
The macro skeleton is the stand-alone network's (:mod:`kubenas_trainer.model`): the same stem,
reduction blocks and head, the same copies of the cell per stage with one shared genotype, and the
same live-edge plan, so a path of the supernet computes what the stand-alone candidate would with
those weights. ``none`` holds no module: the edge is left out, exactly as the stand-alone cell does.

Why single path with uniform sampling rather than a relaxation (DARTS) or a learned sampler: with no
architecture parameters there is nothing that can drift towards parameter-free operations while the
weights train, which is how DARTS and ENAS collapse on NAS-Bench-201; every operation of an edge is
trained about equally often. Paths are drawn uniformly over *buildable* candidates (a path whose cell
has no input-to-output route is drawn again), which is the distribution the search later ranks.

Batch-norm statistics accumulated while training mix every path; :func:`recalibrate` resets them and
re-estimates them on a few training batches with the candidate's own path before it is evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from kubenas_trainer.candidate import Candidate, Edge, live_edges, parse_candidate
from kubenas_trainer.errors import BadCandidate
from kubenas_trainer.model import MacroConfig, ReductionBlock, classifier_head
from kubenas_trainer.ops import build_op, canonical_op

#: draws of a path before giving up on finding a buildable one (a space with almost none is refused)
MAX_DRAWS = 1000


@dataclass(frozen=True)
class SuperSpace:
    """The structural decisions of a search space: a cell (nodes, operations) and/or a layer chain.

    Hyperparameters and augmentation decisions cannot share weights (a width changes every tensor),
    so a one-shot space holds only cells and layers.
    """

    nodes: int | None
    cell_ops: tuple[str, ...]
    layers: int
    layer_ops: tuple[str, ...]
    wire: Mapping[str, Any]

    @classmethod
    def from_search_space(cls, space: Mapping[str, Any]) -> SuperSpace:
        """Read ``spec.searchSpace`` (wire form); a space with other decisions is refused."""
        for key in ("hyperparameters", "augmentation"):
            if space.get(key):
                message = "a one-shot search shares weights across cells and layers only"
                raise BadCandidate(f"searchSpace.{key}", message)
        cell, chain = space.get("cell"), space.get("layers")
        if not cell and not chain:
            raise BadCandidate("searchSpace", "a one-shot search needs a cell or a layer chain")
        nodes = int(cell.get("nodes", 4)) if cell else None
        layers = int(chain["layers"]) if chain else 0
        cell_ops = _operations(cell, "searchSpace.cell.operations")
        layer_ops = _operations(chain, "searchSpace.layers.operations")
        return cls(nodes, cell_ops, layers, layer_ops, dict(space))

    @property
    def edges(self) -> list[Edge]:
        n = self.nodes or 0
        return [(to, src) for to in range(1, n) for src in range(to)]

    def decisions(self) -> dict[str, tuple[str, ...]]:
        """Decision name → the operations it chooses among, in the space's order."""
        out = {f"edge_{to}_{src}": self.cell_ops for to, src in self.edges}
        out |= {f"layer_{i}": self.layer_ops for i in range(self.layers)}
        return out

    def candidate(self, architecture: Mapping[str, Any]) -> Candidate:
        """The candidate ``architecture`` names, checked against this space (BadCandidate otherwise)."""
        for name, ops in self.decisions().items():
            if name in architecture and canonical_op(architecture[name], f"architecture.{name}") not in ops:
                raise BadCandidate(f"architecture.{name}", f"{architecture[name]!r} is not an operation of this space")
        cand = parse_candidate(architecture, self.wire)
        check_buildable(cand)
        return cand

    def sample(self, generator: torch.Generator) -> dict[str, str]:
        """A buildable architecture drawn uniformly (each decision uniform, unbuildable draws rejected)."""
        decisions = self.decisions()
        for _ in range(MAX_DRAWS):
            arch = {
                name: ops[int(torch.randint(len(ops), (1,), generator=generator))] for name, ops in decisions.items()
            }
            try:
                self.candidate(arch)
            except BadCandidate:
                continue
            return arch
        raise BadCandidate("searchSpace", f"no buildable architecture in {MAX_DRAWS} draws")


def _operations(family: Mapping[str, Any] | None, field: str) -> tuple[str, ...]:
    """A family's operations under their registry names, each once, in the order given."""
    if not family:
        return ()
    return tuple(dict.fromkeys(canonical_op(op, field) for op in family["operations"]))


def check_buildable(candidate: Candidate) -> None:
    """BadCandidate when the candidate has no input-to-output path (as the stand-alone builder refuses it)."""
    if candidate.nodes is not None:
        live_edges(candidate.nodes, candidate.edges)
    for index, op in enumerate(candidate.layers):
        if op == "none":
            raise BadCandidate(f"architecture.layer_{index}", "none in a chain cuts every path to the output")


def _choices(ops: Iterable[str], channels: int) -> nn.ModuleDict:
    """One module per operation with weights or behaviour; ``none`` has none (the edge is left out)."""
    return nn.ModuleDict({op: build_op(op, channels) for op in ops if op != "none"})


class SuperCell(nn.Module):
    """A cell whose every edge holds every candidate operation; ``forward`` runs the path's ones."""

    def __init__(self, nodes: int, ops: tuple[str, ...], channels: int) -> None:
        super().__init__()
        self.nodes = nodes
        self.edges = nn.ModuleDict(
            {f"{to}_{src}": _choices(ops, channels) for to in range(1, nodes) for src in range(to)}
        )

    def forward(self, x: torch.Tensor, plan: list[tuple[int, list[tuple[int, str]]]]) -> torch.Tensor:
        states: dict[int, torch.Tensor] = {0: x}
        for to, inputs in plan:
            total: torch.Tensor | None = None
            for src, op in inputs:
                out = self.edges[f"{to}_{src}"][op](states[src])
                total = out if total is None else total + out
            assert total is not None
            states[to] = total
        return states[self.nodes - 1]


def cell_plan(candidate: Candidate) -> list[tuple[int, list[tuple[int, str]]]]:
    """The stand-alone cell's evaluation plan (live edges only) with each edge's operation."""
    if candidate.nodes is None:
        return []
    live = live_edges(candidate.nodes, candidate.edges)
    targets = sorted({to for to, _ in live})
    return [(to, [(src, candidate.edges[(to, src)]) for t, src in live if t == to]) for to in targets]


class SuperNetwork(nn.Module):
    """Stem, stages of super cells and super layers with reduction blocks between, head: the whole space.

    ``forward(x)`` runs the path set by :meth:`use`; the units are laid out as in
    :class:`kubenas_trainer.model.Network`, so a path computes what that candidate's network computes.
    """

    def __init__(self, space: SuperSpace, macro: MacroConfig) -> None:
        super().__init__()
        self.space = space
        channels = macro.width
        self.stem = nn.Sequential(
            nn.Conv2d(macro.in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        units: list[nn.Module] = []
        self.kinds: list[tuple[str, int]] = []  # ("reduce", 0) | ("cell", 0) | ("layer", layer index)
        for stage in range(macro.stages):
            if stage > 0:
                units.append(ReductionBlock(channels, channels * 2))
                self.kinds.append(("reduce", 0))
                channels *= 2
            if space.nodes is not None:
                for _ in range(macro.cells_per_stage):
                    units.append(SuperCell(space.nodes, space.cell_ops, channels))
                    self.kinds.append(("cell", 0))
            first, last = stage * space.layers // macro.stages, (stage + 1) * space.layers // macro.stages
            for index in range(first, last):
                units.append(_choices(space.layer_ops, channels))
                self.kinds.append(("layer", index))
        self.units = nn.ModuleList(units)
        self.head = classifier_head(channels, macro)
        self._candidate: Candidate | None = None
        self._plan: list[tuple[int, list[tuple[int, str]]]] = []

    def use(self, candidate: Candidate) -> None:
        """Run ``candidate``'s path from now on."""
        self._candidate = candidate
        self._plan = cell_plan(candidate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._candidate is None:
            raise RuntimeError("no path chosen: call use(candidate) first")
        x = self.stem(x)
        for unit, (kind, index) in zip(self.units, self.kinds, strict=True):
            if kind == "cell":
                x = unit(x, self._plan)
            elif kind == "layer":
                x = unit[self._candidate.layers[index]](x)
            else:
                x = unit(x)
        return self.head(x)


class PathSource(Protocol):
    """Where the supernet's training steps get their paths: uniform draws, or a learned policy (ENAS,
    :class:`kubenas_trainer.enas.PolicyPaths`). Called once per training step, before its forward pass."""

    def next_path(self) -> dict[str, str]: ...


class UniformPaths:
    """SPOS: each training step's path drawn uniformly over buildable candidates."""

    def __init__(self, space: SuperSpace, generator: torch.Generator) -> None:
        self.space = space
        self.generator = generator

    def next_path(self) -> dict[str, str]:
        return self.space.sample(self.generator)


class SinglePath(nn.Module):
    """The supernet as the training loop sees it: every forward pass in training mode runs a fresh path.

    Training paths come from ``source`` (by default uniform draws from ``generator``), one per step.
    In evaluation mode it draws uniformly from ``generator`` whatever the source, so a validation of
    the supernet during training is an average over random paths: a measure of the supernet as a
    whole, not of any one candidate, and the same measure for uniform and ENAS sampling.
    """

    def __init__(self, supernet: SuperNetwork, generator: torch.Generator, source: PathSource | None = None) -> None:
        super().__init__()
        self.supernet = supernet
        self.generator = generator
        self.source = source if source is not None else UniformPaths(supernet.space, generator)
        self.paths = 0  # paths trained on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arch = self.source.next_path() if self.training else self.supernet.space.sample(self.generator)
        self.supernet.use(self.supernet.space.candidate(arch))
        self.paths += int(self.training)  # training steps, not validation batches
        return self.supernet(x)


def recalibrate(supernet: SuperNetwork, batches: Iterable[torch.Tensor]) -> None:
    """Reset every batch norm's running statistics and re-estimate them on ``batches`` with the current path.

    The statistics become the plain average over the batches (momentum None), so they depend only on
    the candidate and the batches, never on which candidate was evaluated before: evaluations can run
    in any order, in any process, and agree.
    """
    norms = [m for m in supernet.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    was_training = supernet.training
    supernet.train()
    with torch.no_grad():
        for x in batches:
            supernet(x)
    supernet.train(was_training)


def build_supernet(search_space: Mapping[str, Any], macro: MacroConfig) -> SuperNetwork:
    """The supernet of ``search_space`` (wire form) in the skeleton ``macro``."""
    return SuperNetwork(SuperSpace.from_search_space(search_space), macro)


def standalone_state(supernet: SuperNetwork, candidate: Candidate) -> dict[str, torch.Tensor]:
    """The supernet's weights of ``candidate``'s path, named as :class:`kubenas_trainer.model.Network` names them.

    ``Network(candidate, macro).load_state_dict(...)`` takes it as is (strict): the stand-alone network
    then computes what the path computes. Only this renaming lives here; loading weights by name and
    shape in general is the trainer's warm-start concern.
    """
    state = supernet.state_dict()
    plan_edges = {f"{to}_{src}": op for to, inputs in cell_plan(candidate) for src, op in inputs}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] != "units":
            out[key] = value
            continue
        position, kind, index = int(parts[1]), *supernet.kinds[int(parts[1])]
        rest = parts[2:]
        if kind == "reduce":
            out[".".join(["features", str(position), *rest])] = value
        elif kind == "layer":
            if rest[0] == candidate.layers[index]:
                out[".".join(["features", str(position), *rest[1:]])] = value
        elif rest[0] == "edges" and plan_edges.get(rest[1]) == rest[2]:
            out[".".join(["features", str(position), "ops", rest[1], *rest[3:]])] = value
    return out

"""The candidate network: a stem, stages of cells and/or chain layers joined by reduction blocks, a head.

The macro skeleton is NAS-Bench-201's (stem conv, ``stages`` stages of ``cells_per_stage`` cells,
a residual reduction block between stages that halves the resolution and doubles the width, then
BN-ReLU-global-pool-linear) so results on a NAS-Bench-201 cell space are comparable with the table's.
A layer chain reuses the same skeleton: its layers are spread evenly over the stages, after the cells
of each stage when a space has both families. Width, stage count and cells per stage are settings,
not decisions, unless a hyperparameter of the same name overrides them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kubenas_trainer.candidate import Candidate, Edge, live_edges
from kubenas_trainer.errors import BadCandidate
from kubenas_trainer.ops import ReLUConvBN, build_op
from kubenas_trainer.settings import Settings


@dataclass(frozen=True)
class MacroConfig:
    """The shape around the searched parts: input, output and the skeleton's size."""

    in_channels: int
    num_classes: int
    width: int = 16
    stages: int = 3
    cells_per_stage: int = 2
    dropout: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, in_channels: int, num_classes: int) -> MacroConfig:
        """The skeleton the trial's settings describe, for data of ``in_channels`` and ``num_classes``."""
        return cls(
            in_channels=in_channels,
            num_classes=num_classes,
            width=settings.width,
            stages=settings.stages,
            cells_per_stage=settings.cells_per_stage,
            dropout=settings.dropout,
        )


class Cell(nn.Module):
    """A NAS-Bench-201 cell: node ``i`` is the sum of ``op(i, j)(node j)`` over ``j < i``; the last node is the output.

    Only the edges returned by :func:`live_edges` are instantiated, in a fixed evaluation plan, so the
    forward pass is a static sequence of calls that ``torch.compile`` traces without graph breaks.
    """

    def __init__(self, nodes: int, edges: dict[Edge, str], channels: int) -> None:
        super().__init__()
        self.nodes = nodes
        live = live_edges(nodes, edges)
        self.ops = nn.ModuleDict({f"{to}_{src}": build_op(edges[(to, src)], channels) for to, src in live})
        targets = sorted({to for to, _ in live})
        self.plan: list[tuple[int, list[int]]] = [(to, [src for t, src in live if t == to]) for to in targets]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states: dict[int, torch.Tensor] = {0: x}
        for to, sources in self.plan:
            total = self.ops[f"{to}_{sources[0]}"](states[sources[0]])
            for src in sources[1:]:
                total = total + self.ops[f"{to}_{src}"](states[src])
            states[to] = total
        return states[self.nodes - 1]


class ReductionBlock(nn.Module):
    """NAS-Bench-201's residual reduction: two ReLU-conv-BN (the first with stride 2) plus a pooled 1x1 shortcut.

    The shortcut pools with ``ceil_mode`` so every input size, down to 1x1 (tabular data), keeps the
    two branches the same shape.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.conv_b = ReLUConvBN(c_out, 3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, ceil_mode=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


def classifier_head(channels: int, macro: MacroConfig) -> nn.Sequential:
    """BN, ReLU, global average pooling, optional dropout and the linear classifier after the last stage."""
    return nn.Sequential(
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(macro.dropout) if macro.dropout > 0 else nn.Identity(),
        nn.Linear(channels, macro.num_classes),
    )


class Network(nn.Module):
    """Stem, ``features`` (stages of searched units with reductions between) and a classification head."""

    def __init__(self, candidate: Candidate, macro: MacroConfig) -> None:
        super().__init__()
        for index, op in enumerate(candidate.layers):
            if op == "none":
                raise BadCandidate(f"architecture.layer_{index}", "none in a chain cuts every path to the output")
        channels = macro.width
        self.stem = nn.Sequential(
            nn.Conv2d(macro.in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        units: list[nn.Module] = []
        n_layers = len(candidate.layers)
        for stage in range(macro.stages):
            if stage > 0:
                units.append(ReductionBlock(channels, channels * 2))
                channels *= 2
            if candidate.nodes is not None:
                units += [Cell(candidate.nodes, candidate.edges, channels) for _ in range(macro.cells_per_stage)]
            first, last = stage * n_layers // macro.stages, (stage + 1) * n_layers // macro.stages
            units += [build_op(op, channels) for op in candidate.layers[first:last]]
        self.features = nn.Sequential(*units)
        self.head = classifier_head(channels, macro)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.stem(x)))


def build_network(candidate: Candidate, macro: MacroConfig) -> Network:
    """The network of ``candidate``; raises BadCandidate when it has no input-to-output path."""
    return Network(candidate, macro)

"""Candidate operations: every op a cell edge or a chain layer can take, keyed by its name.

All operations keep the channel count and the spatial size (stride 1, "same" padding): the network's
resolution changes only in the reduction blocks between stages (:mod:`kubenas_trainer.model`). That is
what makes every operation interchangeable on every edge, so any sampled architecture is buildable.

Names follow NAS-Bench-201 (``nor_conv_3x3``) and DARTS (``sep_conv_3x3``); the spellings of the
layer-chain family (``conv3x3``, ``identity``, ...) are aliases of the same modules.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kubenas.api.space import OPERATION_ALIASES
from kubenas_trainer.errors import BadCandidate


class Zero(nn.Module):
    """The ``none`` operation: contributes nothing.

    Cells skip ``none`` edges instead of calling this (adding zeros costs time); the module exists so a
    chain layer or a direct test can still run it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class ReLUConvBN(nn.Sequential):
    """ReLU, k x k convolution, batch norm: NAS-Bench-201's ``nor_conv_kxk``."""

    def __init__(self, channels: int, kernel: int, dilation: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
        )


class DilConv(nn.Sequential):
    """ReLU, dilated depthwise k x k, pointwise 1x1, batch norm (DARTS ``dil_conv``)."""

    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                channels,
                channels,
                kernel,
                padding=dilation * (kernel - 1) // 2,
                dilation=dilation,
                groups=channels,
                bias=False,
            ),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable blocks (DARTS ``sep_conv``): cheap in FLOPs, wide receptive field."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__(DilConv(channels, kernel, 1), DilConv(channels, kernel, 1))


OpFactory = Callable[[int], nn.Module]

OPERATIONS: dict[str, OpFactory] = {
    "none": lambda c: Zero(),
    "skip_connect": lambda c: nn.Identity(),
    "nor_conv_1x1": lambda c: ReLUConvBN(c, 1),
    "nor_conv_3x3": lambda c: ReLUConvBN(c, 3),
    "nor_conv_5x5": lambda c: ReLUConvBN(c, 5),
    "sep_conv_3x3": lambda c: SepConv(c, 3),
    "sep_conv_5x5": lambda c: SepConv(c, 5),
    "dil_conv_3x3": lambda c: DilConv(c, 3, 2),
    "avg_pool_3x3": lambda c: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    "max_pool_3x3": lambda c: nn.MaxPool2d(3, stride=1, padding=1),
}

#: second spellings (the layer-chain family's) of registry names: the API's table, one place for both
ALIASES: dict[str, str] = OPERATION_ALIASES


def canonical_op(name: object, field: str) -> str:
    """The registry name of an operation; an unknown one makes the candidate unbuildable."""
    if not isinstance(name, str):
        raise BadCandidate(field, f"operation must be a string, got {name!r}")
    key = ALIASES.get(name, name)
    if key not in OPERATIONS:
        known = ", ".join(sorted([*OPERATIONS, *ALIASES]))
        raise BadCandidate(field, f"unknown operation {name!r} (known: {known})")
    return key


def build_op(name: str, channels: int, field: str = "operation") -> nn.Module:
    """A fresh module for operation ``name`` (any known spelling) on ``channels`` channels."""
    return OPERATIONS[canonical_op(name, field)](channels)

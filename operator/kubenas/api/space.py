"""Search-space definitions as they appear in ``spec.searchSpace``.

A search space is an ordered list of named decisions. Helpers expand common shapes into decisions, in
this order: a NAS-Bench-201-style ``cell`` (one decision per edge, named ``edge_<to>_<from>``), a
``layers`` chain (one decision per layer, named ``layer_<i>``), an ``augmentation`` policy (three
decisions per operation slot, named ``aug_<k>_<j>_op|prob|mag``, see ``kubenas.api.augment``), then
the ``hyperparameters``.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from kubenas.api.augment import AugmentationSpace
from kubenas.api.base import SET_LIST, ApiModel, cel, keyed_list, with_rules

DecisionName = str
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
NB201_OPERATIONS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
CHAIN_OPERATIONS = ["conv3x3", "conv5x5", "sep_conv3x3", "max_pool3x3", "identity"]

#: categorical choices are strings or integers: the CRD types them int-or-string so CEL can check them;
#: real-valued options belong in a float decision (with ``step`` for a fixed grid).
ChoiceValue = str | int


class Decision(ApiModel):
    """One named decision: a categorical choice, or an int or float range (optionally log-scaled)."""

    model_config = with_rules(
        cel(
            "self.type == 'categorical' ? has(self.choices) : (has(self.low) && has(self.high))",
            "a categorical decision needs choices; an int or float decision needs low and high",
        ),
        cel(
            "self.type != 'categorical' || (!has(self.low) && !has(self.high) && !has(self.step))",
            "a categorical decision takes no low, high or step",
        ),
        cel("self.type == 'categorical' || !has(self.choices)", "an int or float decision takes no choices"),
        cel("!has(self.low) || !has(self.high) || self.low < self.high", "low must be less than high", ".low"),
        cel("!self.log || (has(self.low) && self.low > 0.0)", "a log-scaled range needs low > 0", ".low"),
    )

    name: DecisionName = Field(..., pattern=NAME_PATTERN, description="Name, unique in the space.")
    type: Literal["categorical", "int", "float"] = Field(..., description="Kind of domain.")
    choices: list[ChoiceValue] | None = Field(
        None, min_length=1, max_length=1000, description="The values of a categorical decision, in order."
    )
    low: float | None = Field(None, description="Lowest value of an int or float range (inclusive).")
    high: float | None = Field(None, description="Highest value of an int or float range (inclusive).")
    step: float | None = Field(None, gt=0, description="Spacing of an int or float range (int default 1).")
    log: bool = Field(False, description="Sample the range on a log scale (low must be > 0).")

    @model_validator(mode="after")
    def _check_domain(self) -> Decision:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical decision needs choices")
            if len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError("choices must be distinct")
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("a categorical decision takes no low, high, step or log")
            return self
        if self.choices is not None:
            raise ValueError(f"an {self.type} decision takes low and high, not choices")
        if self.low is None or self.high is None:
            raise ValueError(f"an {self.type} decision needs low and high")
        if not self.low < self.high:
            raise ValueError("low must be less than high")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("step and log cannot be combined")
        if self.type == "int":
            for label, value in (("low", self.low), ("high", self.high), ("step", self.step)):
                if value is not None and not float(value).is_integer():
                    raise ValueError(f"{label} of an int decision must be a whole number")
        if not all(math.isfinite(v) for v in (self.low, self.high)):
            raise ValueError("low and high must be finite")
        return self


def _distinct_names(values: list[str], what: str) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be distinct")
    return values


class CellSpace(ApiModel):
    """A NAS-Bench-201-style cell: a DAG of ``nodes`` nodes where every edge j→i (j<i) takes one operation.

    Decisions are named ``edge_<i>_<j>`` in the order (1,0), (2,0), (2,1), (3,0), ... which is the order
    of the NAS-Bench-201 architecture string.
    """

    nodes: int = Field(4, ge=2, le=8, description="Nodes in the cell, the input node included.")
    operations: list[str] = Field(
        default_factory=lambda: list(NB201_OPERATIONS),
        min_length=1,
        max_length=32,
        json_schema_extra=SET_LIST,
        description="Operations an edge can take (none, skip_connect, nor_conv_1x1, nor_conv_3x3, ...).",
    )

    @model_validator(mode="after")
    def _check(self) -> CellSpace:
        _distinct_names(self.operations, "operations")
        return self


class LayerChain(ApiModel):
    """A chain of layers, one operation chosen per layer; decisions are named ``layer_<i>``."""

    layers: int = Field(..., ge=1, le=64, description="Number of layers in the chain.")
    operations: list[str] = Field(
        default_factory=lambda: list(CHAIN_OPERATIONS),
        min_length=1,
        max_length=32,
        json_schema_extra=SET_LIST,
        description="Operations a layer can take (conv3x3, conv5x5, sep_conv3x3, max_pool3x3, identity, ...).",
    )

    @model_validator(mode="after")
    def _check(self) -> LayerChain:
        _distinct_names(self.operations, "operations")
        return self


class SearchSpaceSpec(ApiModel):
    """The space searched: a cell, a layer chain, an augmentation policy and hyperparameters, in that decision order."""

    model_config = with_rules(
        cel(
            "has(self.cell) || has(self.layers) || has(self.augmentation)"
            " || (has(self.hyperparameters) && size(self.hyperparameters) > 0)",
            "define at least one of cell, layers, augmentation or hyperparameters",
        )
    )

    cell: CellSpace | None = Field(None, description="A NAS-Bench-201-style cell DAG.")
    layers: LayerChain | None = Field(None, description="A chain of layers with one operation choice each.")
    augmentation: AugmentationSpace | None = Field(
        None, description="An AutoAugment data-augmentation policy, searched with the rest."
    )
    hyperparameters: list[Decision] = Field(
        default_factory=list,
        max_length=256,
        json_schema_extra=keyed_list("name"),
        description="Further named decisions (learning rate, width, ...).",
    )

    @model_validator(mode="after")
    def _check(self) -> SearchSpaceSpec:
        if self.cell is None and self.layers is None and self.augmentation is None and not self.hyperparameters:
            raise ValueError("define at least one of cell, layers, augmentation or hyperparameters")
        _distinct_names([d.name for d in self.hyperparameters], "hyperparameter names")
        return self

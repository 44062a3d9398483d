"""Search-space definitions as they appear in ``spec.searchSpace``.

A search space is an ordered list of named decisions. Helpers expand common shapes into decisions, in
this order: a NAS-Bench-201-style ``cell`` (one decision per edge, named ``edge_<to>_<from>``), a
``layers`` chain (one decision per layer, named ``layer_<i>``), an ``augmentation`` policy (three
decisions per operation slot, named ``aug_<k>_<j>_op|prob|mag``, see ``kubenas.api.augment``), then
the ``hyperparameters``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, get_args

from pydantic import Field, StringConstraints, field_validator, model_validator

from kubenas.api.augment import AugmentationSpace
from kubenas.api.base import SET_LIST, ApiModel, Rule, cel, keyed_list, with_rules

DecisionName = str
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
NB201_OPERATIONS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
CHAIN_OPERATIONS = ["conv3x3", "conv5x5", "sep_conv3x3", "max_pool3x3", "identity"]

#: Every operation a trainer knows (its registry names and their aliases, kubenas_trainer.ops): an
#: unknown one is refused at admission, instead of failing every trial that draws it.
Operation = Literal[
    "none",
    "zero",
    "skip_connect",
    "identity",
    "skip",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "nor_conv_5x5",
    "conv1x1",
    "conv3x3",
    "conv5x5",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv3x3",
    "sep_conv5x5",
    "dil_conv_3x3",
    "dil_conv3x3",
    "avg_pool_3x3",
    "avg_pool3x3",
    "max_pool_3x3",
    "max_pool3x3",
]
KNOWN_OPERATIONS: tuple[str, ...] = get_args(Operation)
#: Second spellings of operations, to the registry name each one builds (the trainer reads this table):
#: two spellings of one operation in a space would be one choice counted twice.
OPERATION_ALIASES: dict[str, str] = {
    "zero": "none",
    "identity": "skip_connect",
    "skip": "skip_connect",
    "conv1x1": "nor_conv_1x1",
    "conv3x3": "nor_conv_3x3",
    "conv5x5": "nor_conv_5x5",
    "sep_conv3x3": "sep_conv_3x3",
    "sep_conv5x5": "sep_conv_5x5",
    "dil_conv3x3": "dil_conv_3x3",
    "avg_pool3x3": "avg_pool_3x3",
    "max_pool3x3": "max_pool_3x3",
}
#: Operations that output zeros: a space of only these cannot train anything.
ZERO_OPERATIONS = ("none", "zero")
#: Relative precision below which two float values are one: a double holds about 16 significant
#: digits, and grid points are tidied to 12 (kubenas.core.space), so a step or a range narrower than
#: this fraction of its magnitude would give points that collapse or fall off the grid.
FLOAT_RESOLUTION = 1e-9

#: The most points one int or stepped float range may have: strategies materialise a range's values,
#: so the bound keeps the controller's memory bounded whatever the manifest says.
MAX_RANGE_POINTS = 100_000
#: Bounds of a range's low and high: beyond them arithmetic on the range (high - low) overflows or
#: loses integers (doubles hold every integer up to 2**53).
MAX_MAGNITUDE = 1e15

#: categorical choices are strings or integers: the CRD types them int-or-string so CEL can check them;
#: real-valued options belong in a float decision (with ``step`` for a fixed grid).
ChoiceValue = Annotated[int, Field(ge=-(2**53), le=2**53)] | Annotated[str, StringConstraints(max_length=256)]


def _is_range(d: Decision) -> bool:
    return d.type != "categorical"


def _whole(value: float | None) -> bool:
    return value is None or (abs(value) <= MAX_MAGNITUDE and float(value).is_integer())


def _points_below(d: Decision) -> float:
    """(high - low) / step: one less than the points of a stepped or int range, 0 for a continuous one."""
    if d.low is None or d.high is None or not _is_range(d):
        return 0.0
    if d.step is not None:
        return (d.high - d.low) / d.step
    return d.high - d.low if d.type == "int" else 0.0


#: max(|low|, |high|) in CEL (which has no abs or max on doubles)
_MAGNITUDE_CEL = (
    "(((self.low >= 0.0 ? self.low : -self.low) >= (self.high >= 0.0 ? self.high : -self.high))"
    " ? (self.low >= 0.0 ? self.low : -self.low) : (self.high >= 0.0 ? self.high : -self.high))"
)


def _resolved(width: float, d: Decision) -> bool:
    """Whether ``width`` (a step, or high - low) is wide enough to tell apart points of ``d``'s range."""
    assert d.low is not None and d.high is not None
    return width >= FLOAT_RESOLUTION * max(abs(d.low), abs(d.high))


def _distinct_choices(choices: list[ChoiceValue] | None) -> bool:
    return choices is None or len({(type(c), c) for c in choices}) == len(choices)


_NOT_CATEGORICAL = [
    Rule(
        f"self.type != 'categorical' || !has(self.{f})",
        f"a categorical decision takes no {f}",
        lambda d, f=f: not (d.type == "categorical" and getattr(d, f) is not None),
        f".{f}",
    )
    for f in ("low", "high", "step")
]


class Decision(ApiModel):
    """One named decision: a categorical choice, or an int or float range (optionally log-scaled)."""

    RULES = (
        Rule(
            "self.type != 'categorical' || has(self.choices)",
            "a categorical decision needs choices",
            lambda d: d.type != "categorical" or d.choices is not None,
            ".choices",
        ),
        Rule(
            "self.type == 'categorical' || !has(self.choices)",
            "an int or float decision takes low and high, not choices",
            lambda d: d.type == "categorical" or d.choices is None,
            ".choices",
        ),
        Rule(
            "self.type == 'categorical' || has(self.low)",
            "an int or float decision needs low",
            lambda d: d.type == "categorical" or d.low is not None,
            ".low",
        ),
        Rule(
            "self.type == 'categorical' || has(self.high)",
            "an int or float decision needs high",
            lambda d: d.type == "categorical" or d.high is not None,
            ".high",
        ),
        *_NOT_CATEGORICAL,
        Rule(
            "self.type != 'categorical' || !has(self.log) || !self.log",
            "a categorical decision cannot be log-scaled",
            lambda d: d.type != "categorical" or not d.log,
            ".log",
        ),
        Rule(
            "!has(self.low) || !has(self.high) || self.low < self.high",
            "low must be less than high",
            lambda d: d.low is None or d.high is None or d.low < d.high,
            ".low",
        ),
        Rule(
            "!has(self.log) || !self.log || !has(self.low) || self.low > 0.0",
            "a log-scaled range needs low > 0",
            lambda d: not d.log or d.low is None or d.low > 0,
            ".low",
        ),
        Rule(
            "!has(self.log) || !self.log || !has(self.step)",
            "step and log cannot be combined",
            lambda d: not d.log or d.step is None,
            ".step",
        ),
        *[
            Rule(
                f"self.type != 'int' || !has(self.{f})"
                f" || (self.{f} >= -{MAX_MAGNITUDE:.0f}.0 && self.{f} <= {MAX_MAGNITUDE:.0f}.0"
                f" && double(int(self.{f})) == self.{f})",
                f"{f} of an int decision must be a whole number",
                lambda d, f=f: d.type != "int" or _whole(getattr(d, f)),
                f".{f}",
            )
            for f in ("low", "high", "step")
        ],
        Rule(
            "!has(self.step) || !has(self.low) || !has(self.high) || self.step <= self.high - self.low",
            "step must not exceed high - low",
            lambda d: d.step is None or d.low is None or d.high is None or d.step <= d.high - d.low,
            ".step",
        ),
        Rule(
            f"!has(self.step) || !has(self.low) || !has(self.high) || self.step <= 0.0"
            f" || (self.high - self.low) / self.step < {MAX_RANGE_POINTS}.0",
            f"a stepped range may have at most {MAX_RANGE_POINTS} points",
            lambda d: d.step is None or d.step <= 0 or _points_below(d) < MAX_RANGE_POINTS,
            ".step",
        ),
        Rule(
            f"self.type != 'int' || has(self.step) || !has(self.low) || !has(self.high)"
            f" || self.high - self.low < {MAX_RANGE_POINTS}.0",
            f"an int range may have at most {MAX_RANGE_POINTS} points (give a step)",
            lambda d: d.type != "int" or d.step is not None or _points_below(d) < MAX_RANGE_POINTS,
            ".high",
        ),
        Rule(
            f"self.type != 'float' || !has(self.low) || !has(self.high) || self.low >= self.high"
            f" || self.high - self.low >= {FLOAT_RESOLUTION!r} * {_MAGNITUDE_CEL}",
            f"low and high are too close for their magnitude (less than {FLOAT_RESOLUTION:g} of it apart):"
            " their points would be one number",
            lambda d: d.type != "float" or d.low is None or d.high is None or _resolved(d.high - d.low, d),
            ".high",
        ),
        Rule(
            f"self.type != 'float' || !has(self.step) || !has(self.low) || !has(self.high)"
            f" || self.step >= {FLOAT_RESOLUTION!r} * {_MAGNITUDE_CEL}",
            f"step is too small for the range's magnitude (less than {FLOAT_RESOLUTION:g} of it): its points"
            " could not be told apart",
            lambda d: d.type != "float" or d.step is None or d.low is None or d.high is None or _resolved(d.step, d),
            ".step",
        ),
    )

    name: DecisionName = Field(..., pattern=NAME_PATTERN, max_length=63, description="Name, unique in the space.")
    type: Literal["categorical", "int", "float"] = Field(..., description="Kind of domain.")
    choices: list[ChoiceValue] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        json_schema_extra=SET_LIST,
        description="The values of a categorical decision, in order (distinct).",
    )
    low: float | None = Field(
        None, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE, description="Lowest value of an int or float range (inclusive)."
    )
    high: float | None = Field(
        None, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE, description="Highest value of an int or float range (inclusive)."
    )
    step: float | None = Field(
        None, gt=0, le=2 * MAX_MAGNITUDE, description="Spacing of an int or float range (int default 1)."
    )
    log: bool = Field(False, description="Sample the range on a log scale (low must be > 0).")

    @field_validator("choices")
    @classmethod
    def _distinct(cls, choices: list[ChoiceValue] | None) -> list[ChoiceValue] | None:
        if not _distinct_choices(choices):
            raise ValueError("choices must be distinct")
        return choices


def _distinct_names(values: list[str], what: str) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be distinct")
    return values


def _trains_something(operations: list[str] | None) -> bool:
    return operations is None or any(o not in ZERO_OPERATIONS for o in operations)


_NOT_ONLY_ZERO = Rule(
    "!has(self.operations) || self.operations.exists(o, !(o in " + str(list(ZERO_OPERATIONS)) + "))",
    "operations must include one that is not none (a space of zero operations trains nothing)",
    lambda m: _trains_something(m.operations),
    ".operations",
)

_NO_ZERO_IN_CHAIN = Rule(
    "!has(self.operations) || !self.operations.exists(o, o in " + str(list(ZERO_OPERATIONS)) + ")",
    "a layer chain cannot take none: every path to the output goes through each layer, so a zero layer cuts"
    " them all (use identity to skip a layer)",
    lambda m: not any(o in ZERO_OPERATIONS for o in m.operations),
    ".operations",
)


def _alias_pairs() -> list[tuple[str, str]]:
    """Every pair of two spellings of one operation (an alias and its registry name, or two aliases)."""
    spellings: dict[str, list[str]] = {}
    for alias, name in OPERATION_ALIASES.items():
        spellings.setdefault(name, [name]).append(alias)
    return [(a, b) for names in spellings.values() for i, a in enumerate(names) for b in names[i + 1 :]]


def _one_spelling(operations: list[str] | None) -> bool:
    chosen = set(operations or ())
    return not any(a in chosen and b in chosen for a, b in _alias_pairs())


_ONE_SPELLING = Rule(
    "!has(self.operations) || !("
    + " || ".join(f"('{a}' in self.operations && '{b}' in self.operations)" for a, b in _alias_pairs())
    + ")",
    "operations names one operation twice, under two spellings (e.g. zero and none, identity and skip_connect,"
    " conv3x3 and nor_conv_3x3): it would be one choice counted twice",
    lambda m: _one_spelling(m.operations),
    ".operations",
)


class CellSpace(ApiModel):
    """A NAS-Bench-201-style cell: a DAG of ``nodes`` nodes where every edge j→i (j<i) takes one operation.

    Decisions are named ``edge_<i>_<j>`` in the order (1,0), (2,0), (2,1), (3,0), ... which is the order
    of the NAS-Bench-201 architecture string.
    """

    RULES = (_NOT_ONLY_ZERO, _ONE_SPELLING)

    nodes: int = Field(4, ge=2, le=8, description="Nodes in the cell, the input node included.")
    operations: list[Operation] = Field(
        default_factory=lambda: list(NB201_OPERATIONS),
        min_length=1,
        max_length=32,
        json_schema_extra=SET_LIST,
        description="Operations an edge can take (none, skip_connect, nor_conv_1x1, nor_conv_3x3, ...).",
    )

    @field_validator("operations")
    @classmethod
    def _distinct(cls, operations: list[str]) -> list[str]:
        return _distinct_names(operations, "operations")


class LayerChain(ApiModel):
    """A chain of layers, one operation chosen per layer; decisions are named ``layer_<i>``."""

    RULES = (_NO_ZERO_IN_CHAIN, _ONE_SPELLING)

    layers: int = Field(..., ge=1, le=64, description="Number of layers in the chain.")
    operations: list[Operation] = Field(
        default_factory=lambda: list(CHAIN_OPERATIONS),
        min_length=1,
        max_length=32,
        json_schema_extra=SET_LIST,
        description="Operations a layer can take (conv3x3, conv5x5, sep_conv3x3, max_pool3x3, identity, ...).",
    )

    @field_validator("operations")
    @classmethod
    def _distinct(cls, operations: list[str]) -> list[str]:
        return _distinct_names(operations, "operations")


#: Names the expanders give their decisions, per family: a hyperparameter may not take one.
GENERATED_NAMES = {
    "cell": r"^edge_[0-9]+_[0-9]+$",
    "layers": r"^layer_[0-9]+$",
    "augmentation": r"^aug_[0-9]+_[0-9]+_(op|prob|mag)$",
}


def _no_clash(space: SearchSpaceSpec, family: str) -> bool:
    if getattr(space, family) is None:
        return True
    return not any(re.search(GENERATED_NAMES[family], h.name) for h in space.hyperparameters)


_NO_CLASH = tuple(
    Rule(
        f"!has(self.{family}) || !has(self.hyperparameters)"
        f" || self.hyperparameters.all(h, !h.name.matches(r'{pattern}'))",
        f"hyperparameter names matching {pattern} are taken by the {family}'s decisions",
        lambda m, family=family: _no_clash(m, family),
        ".hyperparameters",
    )
    for family, pattern in GENERATED_NAMES.items()
)


class SearchSpaceSpec(ApiModel):
    """The space searched: a cell, a layer chain, an augmentation policy and hyperparameters, in that decision order."""

    RULES = _NO_CLASH

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
        return self

    @field_validator("hyperparameters")
    @classmethod
    def _names_distinct(cls, hyperparameters: list[Decision]) -> list[Decision]:
        _distinct_names([d.name for d in hyperparameters], "hyperparameter names")
        return hyperparameters

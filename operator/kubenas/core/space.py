"""Search spaces: ordered named decisions, canonical ids, sampling, encoding and neighbourhoods.

A :class:`SearchSpace` is built from ``spec.searchSpace`` (``kubenas.api.space.SearchSpaceSpec``) or
directly from decisions. An *architecture* is a plain ``dict`` decision name → value, in space
order; its canonical string (:meth:`SearchSpace.canonical`) is its identity everywhere (duplicate
detection, Trial ``architectureId``, result tables).

Every strategy works through this module, so a new space shape (a new expander) is one function here
and nothing else changes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kubenas.api.space import Decision as DecisionSpec
from kubenas.api.space import SearchSpaceSpec
from kubenas.core.augment import augmentation_choices, augmentation_family
from kubenas.core.errors import SpecError

Value = str | int | float | bool
Architecture = dict[str, Value]


@dataclass(frozen=True)
class Categorical:
    """A choice among ``choices``."""

    name: str
    choices: tuple[Value, ...]

    @property
    def finite(self) -> bool:
        return True

    @property
    def cardinality(self) -> int:
        return len(self.choices)

    def values(self, float_steps: int = 5) -> tuple[Value, ...]:
        return self.choices

    def sample(self, rng: np.random.Generator) -> Value:
        return self.choices[int(rng.integers(len(self.choices)))]

    def contains(self, value: Any) -> bool:
        return any(_same(value, c) for c in self.choices)

    def normalize(self, value: Any) -> Value:
        for c in self.choices:
            if _same(value, c):
                return c
        raise ValueError(f"{value!r} is not one of {list(self.choices)}")

    def to_unit(self, value: Value) -> float:
        """Position in [0, 1] (index / (n-1)); used by numeric encoders."""
        i = self.index(value)
        return i / max(1, len(self.choices) - 1)

    def index(self, value: Value) -> int:
        for i, c in enumerate(self.choices):
            if _same(value, c):
                return i
        raise ValueError(f"{value!r} is not one of {list(self.choices)}")


def _unit(v: float, low: float, high: float, log: bool) -> float:
    """Position of ``v`` in [low, high] as a number in [0, 1], on a log scale when ``log``."""
    if log:
        return (math.log(v) - math.log(low)) / (math.log(high) - math.log(low))
    return (v - low) / (high - low)


@dataclass(frozen=True)
class IntRange:
    """Integers from ``low`` to ``high`` inclusive, every ``step``, optionally log-scaled."""

    name: str
    low: int
    high: int
    step: int = 1
    log: bool = False

    @property
    def finite(self) -> bool:
        return True

    @property
    def cardinality(self) -> int:
        return (self.high - self.low) // self.step + 1

    def values(self, float_steps: int = 5) -> tuple[int, ...]:
        return tuple(range(self.low, self.high + 1, self.step))

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
            return int(min(self.high, max(self.low, math.floor(x))))
        return self.low + self.step * int(rng.integers(self.cardinality))

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            return False
        v = int(value)
        return self.low <= v <= self.high and (v - self.low) % self.step == 0

    def normalize(self, value: Any) -> int:
        if not self.contains(value):
            raise ValueError(f"{value!r} is not an integer in [{self.low}, {self.high}] step {self.step}")
        return int(value)

    def to_unit(self, value: Value) -> float:
        return _unit(float(value), self.low, self.high, self.log)

    def index(self, value: Value) -> int:
        return (int(value) - self.low) // self.step


@dataclass(frozen=True)
class FloatRange:
    """Reals from ``low`` to ``high``, optionally on a ``step`` grid or log-scaled."""

    name: str
    low: float
    high: float
    step: float | None = None
    log: bool = False

    @property
    def finite(self) -> bool:
        return self.step is not None

    @property
    def cardinality(self) -> int:
        if self.step is None:
            raise ValueError(f"{self.name} is a continuous range")
        return math.floor((self.high - self.low) / self.step + 1e-9) + 1

    def values(self, float_steps: int = 5) -> tuple[float, ...]:
        """The grid of this range: its step grid, or ``float_steps`` evenly (log-)spaced points."""
        if self.step is not None:
            pts = [self.low + i * self.step for i in range(self.cardinality)]
        elif self.log:
            pts = list(np.exp(np.linspace(math.log(self.low), math.log(self.high), float_steps)))
        else:
            pts = list(np.linspace(self.low, self.high, float_steps))
        return tuple(float(min(self.high, max(self.low, _tidy(float(p))))) for p in pts)

    def sample(self, rng: np.random.Generator) -> float:
        if self.step is not None:
            return self.values()[int(rng.integers(self.cardinality))]
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        v = float(value)
        if not (self.low <= v <= self.high):
            return False
        if self.step is not None:
            k = (v - self.low) / self.step
            return abs(k - round(k)) < 1e-6
        return True

    def normalize(self, value: Any) -> float:
        if not self.contains(value):
            raise ValueError(f"{value!r} is not a number in [{self.low}, {self.high}]")
        return float(value)

    def to_unit(self, value: Value) -> float:
        return _unit(float(value), self.low, self.high, self.log)

    def index(self, value: Value) -> int:
        if self.step is None:
            raise ValueError(f"{self.name} is a continuous range")
        return round((float(value) - self.low) / self.step)


Decision = Categorical | IntRange | FloatRange


def _tidy(p: float) -> float:
    """``p`` without the float noise of its arithmetic (``0.1 + 2 * 0.1`` is 0.3): rounded to 12 decimals
    where that is within a billionth of ``p`` (grids read as users wrote them, and as they always have),
    else to 12 significant digits, which keeps tiny values (``1e-14``) that 12 decimals would zero."""
    r = round(p, 12)
    return float(r) if abs(r - p) <= 1e-9 * abs(p) else float(f"{p:.12g}")


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 and '1' apart from 1 (YAML round trips must not merge them)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return a == b


def _format(value: Value) -> str:
    """Text of a value in a canonical id; strings that would read as numbers or break the id are quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            if not any(c in value for c in ',="') and value not in ("true", "false"):
                return value
        return json.dumps(value)
    return str(value)


@dataclass(frozen=True)
class SearchSpace:
    """An ordered tuple of decisions, plus the shape they came from (``families``) for builders."""

    decisions: tuple[Decision, ...]
    families: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [d.name for d in self.decisions]
        if not names:
            raise SpecError("spec.searchSpace", "the space has no decisions")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SpecError("spec.searchSpace", f"decision names repeat: {', '.join(dup)}")

    # -- shape -------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.decisions)

    def __len__(self) -> int:
        return len(self.decisions)

    def __getitem__(self, name: str) -> Decision:
        for d in self.decisions:
            if d.name == name:
                return d
        raise KeyError(name)

    @property
    def finite(self) -> bool:
        return all(d.finite for d in self.decisions)

    @property
    def size(self) -> int | None:
        """Number of distinct architectures, or None when a decision is continuous."""
        if not self.finite:
            return None
        return math.prod(d.cardinality for d in self.decisions)

    # -- architectures ------------------------------------------------------------------------
    def validate(self, architecture: Mapping[str, Any], field_path: str = "architecture") -> Architecture:
        """The architecture normalised to space order and value types; SpecError names the bad key."""
        if not isinstance(architecture, Mapping):
            raise SpecError(field_path, "must be a mapping of decision name to value")
        extra = sorted(set(architecture) - set(self.names))
        if extra:
            raise SpecError(f"{field_path}.{extra[0]}", "is not a decision of this space")
        out: Architecture = {}
        for d in self.decisions:
            if d.name not in architecture:
                raise SpecError(f"{field_path}.{d.name}", "is missing")
            try:
                out[d.name] = d.normalize(architecture[d.name])
            except ValueError as exc:
                raise SpecError(f"{field_path}.{d.name}", str(exc)) from None
        return out

    def canonical(self, architecture: Mapping[str, Any]) -> str:
        """The architecture's identity: ``name=value`` pairs in space order, joined by ``,``."""
        return ",".join(f"{d.name}={_format(architecture[d.name])}" for d in self.decisions)

    def parse(self, canonical: str) -> Architecture:
        """Inverse of :meth:`canonical`."""
        raw: dict[str, Any] = {}
        for part in canonical.split(","):
            name, _, text = part.partition("=")
            raw[name] = text
        out: Architecture = {}
        for d in self.decisions:
            if d.name not in raw:
                raise SpecError(f"architectureId.{d.name}", "is missing")
            text = raw[d.name]
            candidates = d.values() if d.finite else ()
            match = next((v for v in candidates if _format(v) == text), None)
            if match is None:
                if isinstance(d, FloatRange):
                    match = float(text)
                else:
                    raise SpecError(f"architectureId.{d.name}", f"{text!r} is not a value of this decision")
            out[d.name] = match
        return out

    def sample(self, rng: np.random.Generator) -> Architecture:
        return {d.name: d.sample(rng) for d in self.decisions}

    # -- encodings (used by model-based strategies) -------------------------------------------
    def indices(self, architecture: Mapping[str, Any]) -> tuple[int, ...]:
        """Choice index per decision (finite spaces only)."""
        return tuple(d.index(architecture[d.name]) for d in self.decisions)

    def from_indices(self, indices: Sequence[int]) -> Architecture:
        return {d.name: d.values()[i] for d, i in zip(self.decisions, indices, strict=True)}

    def rank(self, architecture: Mapping[str, Any]) -> int:
        """Mixed-radix position of the architecture among all of a finite space (0..size-1)."""
        r = 0
        for d, i in zip(self.decisions, self.indices(architecture), strict=True):
            r = r * d.cardinality + i
        return r

    def unrank(self, rank: int) -> Architecture:
        idx: list[int] = []
        for d in reversed(self.decisions):
            rank, i = divmod(rank, d.cardinality)
            idx.append(i)
        return self.from_indices(list(reversed(idx)))

    def one_hot(self, architecture: Mapping[str, Any]) -> np.ndarray:
        """Categoricals one-hot, ranges as one number in [0, 1]: a vector for surrogate models."""
        parts: list[float] = []
        for d in self.decisions:
            v = architecture[d.name]
            if isinstance(d, Categorical):
                hot = [0.0] * d.cardinality
                hot[d.index(v)] = 1.0
                parts.extend(hot)
            else:
                parts.append(d.to_unit(v))
        return np.asarray(parts, dtype=np.float64)

    def neighbours(self, architecture: Mapping[str, Any]) -> Iterator[Architecture]:
        """Every architecture one decision away (finite decisions: each other value; ranges: ±1 step)."""
        for d in self.decisions:
            current = architecture[d.name]
            if d.finite:
                options: Sequence[Value] = d.values()
                if isinstance(d, Categorical):
                    others = [v for v in options if not _same(v, current)]
                else:
                    i = d.index(current)
                    others = [options[j] for j in (i - 1, i + 1) if 0 <= j < len(options)]
            else:
                others = []
            for v in others:
                child = dict(architecture)
                child[d.name] = v
                yield child

    def mutate(self, architecture: Mapping[str, Any], rng: np.random.Generator, mutations: int = 1) -> Architecture:
        """A child that differs in ``mutations`` distinct decisions (each forced to change where it can)."""
        child = dict(architecture)
        k = min(mutations, len(self.decisions))
        for pos in rng.choice(len(self.decisions), size=k, replace=False):
            d = self.decisions[int(pos)]
            current = child[d.name]
            if isinstance(d, Categorical):
                if d.cardinality > 1:
                    others = [v for v in d.choices if not _same(v, current)]
                    child[d.name] = others[int(rng.integers(len(others)))]
            elif isinstance(d, FloatRange) and d.step is None:
                u = min(1.0, max(0.0, d.to_unit(current) + rng.normal(0.0, 0.15)))
                if d.log:
                    child[d.name] = float(math.exp(math.log(d.low) + u * (math.log(d.high) - math.log(d.low))))
                else:
                    child[d.name] = float(d.low + u * (d.high - d.low))
            else:
                vals = d.values()
                if len(vals) > 1:
                    i = d.index(current)
                    j = i + int(rng.choice([-1, 1])) * (1 + int(rng.integers(max(1, len(vals) // 4))))
                    j = min(len(vals) - 1, max(0, j))
                    if j == i:
                        j = i - 1 if i > 0 else i + 1
                    child[d.name] = vals[j]
        return child


# -- builders ----------------------------------------------------------------------------------
def cell_edges(nodes: int) -> list[tuple[int, int]]:
    """Edges (to, from) of a NAS-Bench-201-style cell, in the order of its architecture string."""
    return [(i, j) for i in range(1, nodes) for j in range(i)]


def edge_name(to: int, src: int) -> str:
    return f"edge_{to}_{src}"


def layer_name(i: int) -> str:
    return f"layer_{i}"


def _decision_from_spec(spec: DecisionSpec) -> Decision:
    if spec.type == "categorical":
        assert spec.choices is not None
        return Categorical(spec.name, tuple(spec.choices))
    assert spec.low is not None and spec.high is not None
    if spec.type == "int":
        return IntRange(spec.name, int(spec.low), int(spec.high), int(spec.step or 1), spec.log)
    return FloatRange(spec.name, float(spec.low), float(spec.high), spec.step, spec.log)


def build_space(spec: SearchSpaceSpec, field_path: str = "spec.searchSpace") -> SearchSpace:
    """Expand ``spec.searchSpace`` into ordered decisions: cell edges, layers, augmentation, hyperparameters."""
    decisions: list[Decision] = []
    families: dict[str, Any] = {}
    if spec.cell is not None:
        families["cell"] = {"nodes": spec.cell.nodes, "operations": list(spec.cell.operations)}
        decisions += [Categorical(edge_name(i, j), tuple(spec.cell.operations)) for i, j in cell_edges(spec.cell.nodes)]
    if spec.layers is not None:
        families["layers"] = {"layers": spec.layers.layers, "operations": list(spec.layers.operations)}
        decisions += [Categorical(layer_name(i), tuple(spec.layers.operations)) for i in range(spec.layers.layers)]
    if spec.augmentation is not None:
        families["augmentation"] = augmentation_family(spec.augmentation)
        decisions += [Categorical(name, choices) for name, choices in augmentation_choices(spec.augmentation)]
    taken = {d.name for d in decisions}
    for k, h in enumerate(spec.hyperparameters):
        if h.name in taken:
            raise SpecError(f"{field_path}.hyperparameters[{k}].name", f"{h.name!r} clashes with a generated decision")
        decisions.append(_decision_from_spec(h))
    families["hyperparameters"] = [h.name for h in spec.hyperparameters]
    return SearchSpace(tuple(decisions), families)


def nb201_string(architecture: Mapping[str, Any], nodes: int = 4) -> str:
    """The NAS-Bench-201 string ``|op~0|+|op~0|op~1|+...`` of a cell architecture."""
    groups = []
    for i in range(1, nodes):
        groups.append("|" + "|".join(f"{architecture[edge_name(i, j)]}~{j}" for j in range(i)) + "|")
    return "+".join(groups)

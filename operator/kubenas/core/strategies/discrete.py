"""Finite views of a search space: the values each decision takes when a strategy needs a grid.

Grid search and the REINFORCE controller both work on a finite set of values per decision.
Categoricals and stepped ranges already are finite; a continuous float range becomes
``float_steps`` evenly (log-)spaced points. A very wide int range can be thinned to ``max_values``
points for a policy head (grid search keeps every integer: it is meant to be exhaustive).
"""

from __future__ import annotations

import math

import numpy as np

from kubenas.core.space import Categorical, Decision, IntRange, SearchSpace, Value


def decision_values(decision: Decision, float_steps: int, max_values: int | None = None) -> tuple[Value, ...]:
    """The values of ``decision`` on its grid, at most ``max_values`` of them for int ranges."""
    if isinstance(decision, IntRange) and max_values is not None and decision.cardinality > max_values:
        if decision.log:
            pts = np.exp(np.linspace(math.log(decision.low), math.log(decision.high), max_values))
        else:
            pts = np.linspace(decision.low, decision.high, max_values)
        snapped = sorted({decision.low + decision.step * round((p - decision.low) / decision.step) for p in pts})
        return tuple(int(v) for v in snapped if decision.low <= v <= decision.high)
    return decision.values(float_steps)


def discretize(space: SearchSpace, float_steps: int, max_values: int | None = None) -> SearchSpace:
    """The same space with every decision turned into a categorical over its grid values.

    Values keep their types, so an architecture of the discrete space is valid in the original one
    and has the same canonical id there.
    """
    return SearchSpace(
        tuple(Categorical(d.name, decision_values(d, float_steps, max_values)) for d in space.decisions),
        space.families,
    )

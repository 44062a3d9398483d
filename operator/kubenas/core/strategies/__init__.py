"""Search strategies behind one ask/tell interface (see ``base.py`` for the lifecycle).

Strategy modules are imported only when a strategy of theirs is made, so importing this package
costs nothing: the operator process must never load torch (REINFORCE, GP) or Optuna (TPE, GP).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from kubenas.api.strategy import StrategySpec
from kubenas.api.v1alpha1 import ObjectiveMetric
from kubenas.core.errors import SpecError
from kubenas.core.space import SearchSpace
from kubenas.core.strategies.base import Observation, Strategy

#: strategy name → (module, class)
REGISTRY: dict[str, tuple[str, str]] = {
    "random": ("kubenas.core.strategies.random_", "RandomSearch"),
    "grid": ("kubenas.core.strategies.grid", "GridSearch"),
    "evolution": ("kubenas.core.strategies.evolution", "RegularizedEvolution"),
    "reinforce": ("kubenas.core.strategies.reinforce", "Reinforce"),
    "tpe": ("kubenas.core.strategies.tpe", "TPE"),
    "gp": ("kubenas.core.strategies.gp", "GaussianProcess"),
    "progressive": ("kubenas.core.strategies.progressive", "Progressive"),
    "retrain": ("kubenas.core.strategies.retrain", "Retrain"),
    "nsga2": ("kubenas.core.strategies.nsga2", "NSGA2"),
}


def strategy_class(name: str) -> type[Strategy]:
    if name not in REGISTRY:
        raise SpecError("spec.strategy.name", f"unknown strategy {name!r}; one of {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def make_strategy(spec: StrategySpec, space: SearchSpace, objectives: Sequence[ObjectiveMetric] = ()) -> Strategy:
    """A fresh strategy for ``spec`` over ``space``, seeded with ``spec.seed``; with several
    ``objectives`` it searches their Pareto front (only strategies that can: ``multi_objective``). It
    starts from the resolved ``seedFrom`` architectures when there are some."""
    cls = strategy_class(spec.name)
    if len(objectives) > 1 and not cls.multi_objective:
        raise SpecError("spec.strategy.name", f"strategy {spec.name!r} cannot search several objectives")
    strategy = cls(space, spec.settings(), spec.seed)
    if len(objectives) > 1:
        strategy.use_objectives(objectives)
    if spec.seed_from is not None and spec.seed_from.architectures:
        field = "spec.strategy.seedFrom.architectures"
        strategy.start_from(
            [
                space.validate(c.architecture, f"{field}[{i}].architecture")
                for i, c in enumerate(spec.seed_from.architectures)
            ]
        )
    return strategy


__all__ = ["REGISTRY", "Observation", "Strategy", "make_strategy", "strategy_class"]

"""NSGA-II through Optuna's ``NSGAIISampler`` (the study bookkeeping is in ``optuna_study.py``).

Why it is here: it is the standard evolutionary algorithm for several objectives (non-dominated
sorting, then crowding distance, choose each generation's parents), so a multi-objective search has
a well-kept alternative to MOTPE (``tpe`` with several objectives). With one objective it is a plain
genetic algorithm. Each generation is ``population_size`` trials; the first is random.
"""

from __future__ import annotations

from typing import Any

from kubenas.api.strategy import Nsga2Settings
from kubenas.core.strategies.optuna_study import OptunaStrategy


class NSGA2(OptunaStrategy):
    """Optuna's NSGA-II sampler (uniform crossover, mutation of one decision at a time on average)."""

    name = "nsga2"

    def _sampler(self, settings: Nsga2Settings, seed: int) -> Any:
        return self._optuna.samplers.NSGAIISampler(
            seed=seed, population_size=settings.population_size, crossover_prob=settings.crossover_prob
        )

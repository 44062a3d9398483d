"""TPE through Optuna's ``TPESampler`` (the study bookkeeping is in ``optuna_study.py``).

``constant_liar`` keeps parallel asks (made before earlier rewards arrive) from piling onto the same
region. With several objectives the same sampler is MOTPE (Ozaki et al. 2020): the "good" trials it
models are those of the best non-dominated ranks, split by hypervolume contribution.
"""

from __future__ import annotations

from typing import Any

from kubenas.api.strategy import TpeSettings
from kubenas.core.strategies.optuna_study import OptunaStrategy


class TPE(OptunaStrategy):
    """Tree-structured Parzen estimator (Bergstra et al. 2011) as implemented by Optuna."""

    name = "tpe"

    def _sampler(self, settings: TpeSettings, seed: int) -> Any:
        return self._optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=settings.startup_trials,
            n_ei_candidates=settings.candidates,
            multivariate=settings.multivariate,
            constant_liar=True,
        )

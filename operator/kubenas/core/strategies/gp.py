"""Bayesian optimisation with Optuna's ``GPSampler`` (the study bookkeeping is in ``optuna_study.py``).

Why it is here: it is the strongest well-kept model-based peer for small budgets, so Kubenas offers
it as a strategy and measures its own default against it. The GP sampler needs torch and scipy, so,
like REINFORCE, it is a strategy of the torch extra: this module imports neither, Optuna loads them
when the first ask fits the model, and the operator (which only validates specs) never does.

Categorical decisions get Optuna's Hamming-type kernel with one lengthscale per decision (ARD);
parallel asks are handled by the sampler itself (q-batch log EI over the running trials). The plain
sampler repeats architectures on a finite space (a maximum of expected improvement at an observed
point); the shared ledger turns those into a fresh ask, and after ``duplicate_tries`` repeats into a
random unseen architecture. Each repeat costs a model fit, so fewer tries are allowed than for TPE.
"""

from __future__ import annotations

from typing import Any

from kubenas.api.strategy import GpSettings
from kubenas.core.strategies.optuna_study import OptunaStrategy


class GaussianProcess(OptunaStrategy):
    """Optuna's GP sampler (Matérn-5/2 ARD kernel, log expected improvement)."""

    name = "gp"
    duplicate_tries = 3
    multi_objective = False  # admission offers several objectives to tpe and nsga2 only

    def _sampler(self, settings: GpSettings, seed: int) -> Any:
        return self._optuna.samplers.GPSampler(
            seed=seed,
            n_startup_trials=settings.startup_trials,
            deterministic_objective=settings.deterministic_objective,
        )

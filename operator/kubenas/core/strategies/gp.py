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

Cost of an ask: the GP is fitted on at most ``max_points`` completed trials (the best half and then the
most recent, the progressive search's rule), since fitting and the acquisition search grow
with the history. Optuna has no such option; the sampler's per-ask fit takes the trials as an
argument (``_sample_relative_impl``), so a subclass passes the capped list and changes nothing else.
"""

from __future__ import annotations

from typing import Any

from kubenas.api.strategy import GpSettings
from kubenas.core.strategies.ledger import best_and_recent
from kubenas.core.strategies.optuna_study import OptunaStrategy


class GaussianProcess(OptunaStrategy):
    """Optuna's GP sampler (Matérn-5/2 ARD kernel, log expected improvement)."""

    name = "gp"
    duplicate_tries = 3
    multi_objective = False  # admission offers several objectives to tpe and nsga2 only

    def _sampler(self, settings: GpSettings, seed: int) -> Any:
        cap = settings.max_points

        class CappedGPSampler(self._optuna.samplers.GPSampler):  # type: ignore[name-defined,misc]
            def _sample_relative_impl(self, study: Any, completed: list[Any], *args: Any) -> Any:
                if len(completed) > cap and all(len(t.values) == 1 for t in completed):
                    completed = [completed[i] for i in best_and_recent([t.values[0] for t in completed], cap)]
                return super()._sample_relative_impl(study, completed, *args)

        return CappedGPSampler(
            seed=seed,
            n_startup_trials=settings.startup_trials,
            deterministic_objective=settings.deterministic_objective,
        )

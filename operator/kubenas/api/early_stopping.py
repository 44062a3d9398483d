"""``spec.earlyStopping``: which stopping rule ends unpromising trials before their last epoch.

A trial reports its objective metric after each epoch (a *step*, see docs/trial-contract.md). The
rule compares that learning curve with those of the other trials and may end the trial there: it
becomes ``Pruned`` and keeps its partial result. The rules are Optuna's pruners:

- ``median``: stop a trial whose value at a step is worse than the median of the finished trials'
  values at the same step (Katib's median stopping rule), once ``startupTrials`` trials finished and
  after ``warmupSteps`` steps;
- ``asha``: asynchronous successive halving: at the rungs ``minResource * reductionFactor**k``,
  only the best ``1 / reductionFactor`` of the trials that reached a rung go on;
- ``hyperband``: several successive-halving brackets of different aggressiveness, from
  ``minResource`` to ``maxResource`` steps; each trial falls in one bracket by a hash of its index.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubenas.api.base import ApiModel, Rule

StoppingRule = Literal["median", "asha", "hyperband"]


class EarlyStopping(ApiModel):
    """The stopping rule of an experiment (see the module docstring for what each rule does)."""

    RULES = (
        Rule(
            "self.rule != 'hyperband' || has(self.maxResource)",
            "hyperband needs maxResource: the number of steps a trial that is never stopped reports",
            lambda e: e.rule != "hyperband" or e.max_resource is not None,
            ".maxResource",
        ),
        Rule(
            "!has(self.maxResource) || !has(self.minResource) || self.minResource <= self.maxResource",
            "minResource must not exceed maxResource",
            lambda e: e.max_resource is None or e.min_resource <= e.max_resource,
            ".minResource",
        ),
    )

    rule: StoppingRule = Field(..., description="median, asha or hyperband.")
    startup_trials: int = Field(
        5, ge=0, le=10000, description="median: trials that must finish before any trial is stopped."
    )
    warmup_steps: int = Field(0, ge=0, le=100000, description="median: steps a trial always runs before it is judged.")
    min_resource: int = Field(
        1, ge=1, le=100000, description="asha, hyperband: the step of the first rung (epochs a trial runs at least)."
    )
    max_resource: int | None = Field(
        None, ge=1, le=100000, description="hyperband: the steps a trial reports when it is never stopped."
    )
    reduction_factor: int = Field(
        3, ge=2, le=100, description="asha, hyperband: 1/reductionFactor of the trials at a rung go on to the next."
    )

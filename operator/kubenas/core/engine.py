"""The experiment state machine: given the spec and the trial history, what happens next.

``decide`` is the single place where an experiment's fate is decided, for every adapter alike (the
operator, local mode, the benchmark). It performs no I/O and reads no clock: the caller passes the
elapsed time, so the same inputs always give the same decision.

Order of the rules, first match wins:

1. a succeeded trial reached ``objective.target`` → finish Succeeded (GoalReached);
2. more trials failed than ``budget.maxFailedTrials`` → finish Failed (TooManyFailures); and before
   any trial has a result, :data:`CONFIGURATION_ERRORS_TO_STOP` trials that refused their
   configuration (exit 2) → finish Failed (ConfigurationError): every trial shares the settings, so
   the rest would refuse them too (with hyperparameters, one refused value does not stop the search);
3. the trials used ``budget.maxGpuHours`` (running ones included) → finish now, the running trials
   cancelled (GpuHoursExhausted);
4. ``budget.maxDuration`` passed → wait for running trials, then finish (DeadlineExceeded);
5. ``budget.maxTrials`` trials created → wait for running trials, then finish (MaxTrialsReached);
6. fewer than ``parallelTrials`` trials active → ask for the difference (capped by what is left);
7. otherwise wait.

A search that ends without a single succeeded trial finishes Failed (NoTrialSucceeded), whatever
stopped it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from kubenas.api.v1alpha1 import SearchExperimentSpec, TrialCounts
from kubenas.core.records import TrialRecord, objective_value

__all__ = ["Ask", "Finish", "Summary", "TrialRecord", "Wait", "count", "decide", "decide_on", "summarize"]


@dataclass(frozen=True)
class Ask:
    """Start ``count`` more trials now."""

    count: int


@dataclass(frozen=True)
class Wait:
    """Nothing to start; act again when a trial changes."""

    reason: str


@dataclass(frozen=True)
class Finish:
    """The experiment is over."""

    phase: str  # "Succeeded" | "Failed"
    reason: str
    message: str


Action = Ask | Wait | Finish


def count(trials: Sequence[TrialRecord]) -> TrialCounts:
    """Trials by phase (one pass, one model built: this runs on every decision)."""
    by_phase = Counter(t.phase for t in trials)
    return TrialCounts(total=len(trials), **{phase.lower(): n for phase, n in by_phase.items()})


Summary = tuple[TrialCounts, TrialRecord | None]


def summarize(spec: SearchExperimentSpec, trials: Sequence[TrialRecord]) -> Summary:
    """Counts by phase and the best trial (as :func:`count` and :func:`best_of` give them), the two
    things every decision and every status need, in one pass: the operator runs this on every
    reconcile over the whole history, thousands of trials in a long search."""
    by_phase: dict[str, int] = {}
    best: TrialRecord | None = None
    best_reward = -math.inf
    for t in trials:
        phase = t.phase
        by_phase[phase] = by_phase.get(phase, 0) + 1
        if phase == "Succeeded":
            reward = t.reward
            # strictly greater: ties go to the earliest, as in best_of
            if reward is not None and reward > best_reward and math.isfinite(reward):
                best, best_reward = t, reward
    return TrialCounts(total=len(trials), **{phase.lower(): n for phase, n in by_phase.items()}), best


#: trials refusing their configuration, before any result, that end the search (see the module docstring)
CONFIGURATION_ERRORS_TO_STOP = 3
CONFIGURATION_ERROR = "ConfigurationError"


def refused_configuration(trial: TrialRecord) -> int:
    """1 when ``trial`` failed refusing its configuration (the trainer's exit 2), else 0."""
    return int(trial.phase == "Failed" and trial.reason == CONFIGURATION_ERROR)


def _goal_reached(spec: SearchExperimentSpec, best: TrialRecord | None) -> bool:
    target = spec.objective.target
    if target is None or best is None or best.reward is None:
        return False
    value = objective_value(spec.objective, best.reward)
    return value >= target if spec.objective.direction == "maximize" else value <= target


def _finish(reason: str, message: str, best: TrialRecord | None) -> Finish:
    if best is None:
        return Finish("Failed", "NoTrialSucceeded", f"{message}; no trial succeeded")
    return Finish("Succeeded", reason, message)


def decide(spec: SearchExperimentSpec, trials: Sequence[TrialRecord], elapsed_seconds: float | None = None) -> Action:
    """The next action for an experiment with this spec and history (see the module docstring)."""
    refused = sum(refused_configuration(t) for t in trials)
    gpu_seconds = sum(t.gpu_seconds or 0.0 for t in trials)
    return decide_on(spec, *summarize(spec, trials), elapsed_seconds, gpu_seconds, refused)


def decide_on(
    spec: SearchExperimentSpec,
    counts: TrialCounts,
    best: TrialRecord | None,
    elapsed_seconds: float | None = None,
    gpu_seconds: float = 0.0,
    configuration_errors: int = 0,
) -> Action:
    """:func:`decide` from the history's summary: what the driver keeps up to date event by event, so a
    decision costs the same after ten trials as after ten thousand. ``gpu_seconds``: the GPU time the
    trials have used so far, running ones included; ``configuration_errors``: the failed trials that
    refused their configuration."""
    active = counts.pending + counts.running
    budget = spec.budget

    if _goal_reached(spec, best):
        assert best is not None
        return Finish(
            "Succeeded", "GoalReached", f"trial {best.name or best.index} reached the target {spec.objective.target}"
        )
    if budget.max_failed_trials is not None and counts.failed > budget.max_failed_trials:
        return Finish(
            "Failed",
            "TooManyFailures",
            f"{counts.failed} trials failed, more than maxFailedTrials={budget.max_failed_trials}",
        )
    nothing_ran = counts.succeeded + counts.infeasible + counts.pruned == 0
    if configuration_errors >= CONFIGURATION_ERRORS_TO_STOP and nothing_ran:
        return Finish(
            "Failed",
            CONFIGURATION_ERROR,
            f"{configuration_errors} trials refused their configuration (the trainer's exit 2) and none has run:"
            " every trial would; fix trialTemplate.settings (each trial's message names the setting)",
        )
    if budget.max_gpu_hours is not None and gpu_seconds >= budget.max_gpu_hours * 3600:
        return _finish(
            "GpuHoursExhausted",
            f"the trials used {gpu_seconds / 3600:.4g} GPU-hours of maxGpuHours={budget.max_gpu_hours:g}",
            best,
        )
    limit = budget.max_duration_seconds()
    if limit is not None and elapsed_seconds is not None and elapsed_seconds >= limit:
        if active:
            return Wait(f"maxDuration {budget.max_duration} passed; waiting for {active} running trials")
        return _finish("DeadlineExceeded", f"maxDuration {budget.max_duration} passed", best)
    if counts.total >= budget.max_trials:
        if active:
            return Wait(f"all {budget.max_trials} trials started; waiting for {active} to finish")
        return _finish("MaxTrialsReached", f"ran maxTrials={budget.max_trials} trials", best)
    room = min(budget.parallel_trials - active, budget.max_trials - counts.total)
    if room > 0:
        return Ask(room)
    return Wait(f"{active} trials running, parallelTrials={budget.parallel_trials}")

"""The phases of a one-shot search (``spec.oneShot``), decided from what is recorded: pure, no I/O.

An adapter records three things: the supernet run's outcome (phase 1), the evaluations of phase 2
(each a :class:`~kubenas.core.records.TrialRecord` kept in a light record of its own, never a Trial
object), and the retraining Trials of phase 3 (ordinary history). :func:`next_phase` reads the first
two and says what to do now, so a process rebuilt after a kill in any phase picks up where the
record ends:

- no successful supernet yet → :class:`TrainSupernet` (again from scratch: a checkpoint is written
  only at the end), or :class:`OneShotFailed` once its attempts are spent;
- fewer evaluations told than ``oneShot.evaluations`` → :class:`Evaluate`: run the ordinary
  :class:`~kubenas.core.driver.Driver` on :func:`evaluation_spec` with the evaluation history (the
  strategy is rebuilt by replay, exactly as for trials);
- otherwise → :class:`Retrain`: the ordinary driver on :func:`retrain_spec`, a retrain of the top k
  evaluations (:mod:`kubenas.core.retrain`), whose Trials are the experiment's results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubenas.api.oneshot import OneShot
from kubenas.api.strategy import RetrainSettings
from kubenas.api.v1alpha1 import Budget, SearchExperimentSpec
from kubenas.core.errors import SpecError
from kubenas.core.outcome import judge
from kubenas.core.records import TrialRecord, trial_seed
from kubenas.core.retrain import resolved, top_architectures

#: the phases, as status and events name them
SUPERNET, SEARCH, RETRAIN = "Supernet", "Search", "Retrain"


@dataclass(frozen=True)
class SupernetRecord:
    """The supernet run as recorded: attempts made, and once one ended for good, its verdict."""

    attempts: int = 0
    succeeded: bool = False
    failed: bool = False
    metrics: Mapping[str, float] = field(default_factory=dict)
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class TrainSupernet:
    """Run attempt ``attempt`` of the supernet trainer with these settings and seed."""

    attempt: int
    settings: Mapping[str, Any]
    seed: int


@dataclass(frozen=True)
class Evaluate:
    """Drive phase 2: the ordinary driver on ``spec`` over the recorded evaluations."""

    spec: SearchExperimentSpec


@dataclass(frozen=True)
class Retrain:
    """Drive phase 3: the ordinary driver on ``spec`` (a retrain of the top k) over the Trials."""

    spec: SearchExperimentSpec


@dataclass(frozen=True)
class OneShotFailed:
    """The search cannot go on; ``reason`` and ``message`` say why."""

    reason: str
    message: str


Phase = TrainSupernet | Evaluate | Retrain | OneShotFailed


def settings_of(spec: SearchExperimentSpec) -> OneShot:
    if spec.one_shot is None:
        raise SpecError("spec.oneShot", "the experiment is not a one-shot search")
    return spec.one_shot


def supernet_settings(spec: SearchExperimentSpec) -> dict[str, Any]:
    """The trial settings with ``oneShot.supernetSettings`` on top (keys in either spelling)."""
    return {**spec.trial_template.settings, **settings_of(spec).supernet_settings}


def supernet_seed(spec: SearchExperimentSpec) -> int:
    """The supernet's seed: fixed by the experiment's seed, apart from every trial's."""
    return trial_seed(spec.strategy.seed, 100_000)


def evaluation_spec(spec: SearchExperimentSpec) -> SearchExperimentSpec:
    """Phase 2 as an ordinary search: the same space, strategy and objective, ``evaluations`` candidates,
    ``evaluators`` at a time, no goal or deadline (a one-shot score is not the objective's real value)."""
    one = settings_of(spec)
    objective = spec.objective.model_copy(update={"target": None})
    return spec.model_copy(
        update={
            "one_shot": None,
            "objective": objective,
            "budget": Budget(max_trials=one.evaluations, parallel_trials=one.evaluators),
            "early_stopping": None,
        }
    )


def retrain_spec(spec: SearchExperimentSpec, evaluations: Sequence[TrialRecord]) -> SearchExperimentSpec:
    """Phase 3 as an ordinary retrain experiment: the ``topK`` best distinct evaluated candidates,
    best first, trained from scratch with the trial template; ``budget`` as the experiment gives it."""
    one = settings_of(spec)
    top = top_architectures(evaluations, spec.objective, one.top_k)
    if not top:
        raise SpecError(
            "spec.oneShot", f"no candidate was scored on the supernet: nothing to retrain{_why(evaluations)}"
        )
    strategy = spec.strategy.model_copy(
        update={
            "name": "retrain",
            "retrain": RetrainSettings(architectures=top, top_k=len(top)),
            spec.strategy.name: None,
        }
    )
    return resolved(spec.model_copy(update={"one_shot": None, "strategy": strategy}))


def _why(evaluations: Sequence[TrialRecord]) -> str:
    """The evaluations' outcome in brief, with the first failure's reason (why nothing can be retrained)."""
    done = [e for e in evaluations if e.told]
    failed = next((e for e in done if e.phase != "Succeeded"), None)
    if failed is None:
        return f" ({len(done)} evaluations)"
    cause = ": ".join(x for x in (failed.reason, failed.message) if x)
    return f" ({len(done)} evaluations, none usable; {failed.name or failed.index}: {cause or failed.phase})"


def supernet_outcome(
    record: SupernetRecord, attempt: int, exit_code: int | None, result: str | None, retries: int
) -> SupernetRecord:
    """The record after attempt ``attempt`` ended: the trial rule of :func:`kubenas.core.outcome.judge`."""
    verdict = judge(exit_code, result, attempt, retries)
    if verdict.verdict == "succeeded":
        return SupernetRecord(attempt, True, False, verdict.metrics, verdict.reason, verdict.message)
    if verdict.verdict == "retry":
        return SupernetRecord(attempt, False, False, {}, verdict.reason, verdict.message)
    return SupernetRecord(attempt, False, True, {}, verdict.reason or "Failed", verdict.message)


def next_phase(spec: SearchExperimentSpec, supernet: SupernetRecord, evaluations: Sequence[TrialRecord]) -> Phase:
    """What to do now, from the supernet record and the evaluations told so far."""
    one = settings_of(spec)
    if supernet.failed:
        detail = f": {supernet.message}" if supernet.message else ""
        return OneShotFailed("SupernetFailed", f"the supernet's training failed ({supernet.reason}){detail}")
    if not supernet.succeeded:
        return TrainSupernet(supernet.attempts + 1, supernet_settings(spec), supernet_seed(spec))
    if sum(1 for e in evaluations if e.told) < one.evaluations:
        return Evaluate(evaluation_spec(spec))
    try:
        return Retrain(retrain_spec(spec, evaluations))
    except SpecError as exc:
        return OneShotFailed("NothingToRetrain", str(exc))


def phase_name(phase: Phase) -> str:
    """The phase as status and events name it."""
    if isinstance(phase, TrainSupernet):
        return SUPERNET
    if isinstance(phase, Evaluate):
        return SEARCH
    return RETRAIN


__all__ = [
    "RETRAIN",
    "SEARCH",
    "SUPERNET",
    "Evaluate",
    "OneShotFailed",
    "Phase",
    "Retrain",
    "SupernetRecord",
    "TrainSupernet",
    "evaluation_spec",
    "next_phase",
    "phase_name",
    "retrain_spec",
    "supernet_outcome",
    "supernet_seed",
    "supernet_settings",
]

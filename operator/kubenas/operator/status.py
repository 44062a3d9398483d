"""Status of experiments and trials, computed as pure functions of what the operator knows.

The experiment status is recomputed whole from the trial history on every reconcile and written as
a merge patch only when it differs from what the object already shows, so a restarted operator
writes nothing until something actually changes. Condition transition times are carried over from
the current status, as the Kubernetes API conventions ask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubenas.api.v1alpha1 import MAX_FRONT, SearchExperimentSpec, SearchExperimentStatus
from kubenas.core.codec import finite_or_none
from kubenas.core.engine import Summary
from kubenas.core.pareto import Front, front_wire
from kubenas.core.records import objective_value
from kubenas.core.spec_changes import SpecVerdict as SpecVerdict  # part of the status it shapes
from kubenas.operator.views import format_time

# condition types
CONTROLLER_READY = "ControllerReady"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SPEC_ACCEPTED = "SpecAccepted"

TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Verdict:
    """Where the experiment stands: its phase, and the reason and message that explain it."""

    phase: str  # Pending | Running | Succeeded | Failed
    reason: str
    message: str


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """``conditions`` with ``type_`` set; its lastTransitionTime changes only when its status flips."""
    value = "True" if status else "False"
    out: list[dict[str, Any]] = []
    found = False
    for c in conditions:
        if c.get("type") != type_:
            out.append(dict(c))
            continue
        found = True
        transition = c.get("lastTransitionTime") if c.get("status") == value else None
        out.append(_condition(type_, value, reason, message, transition or format_time(now), generation))
    if not found:
        out.append(_condition(type_, value, reason, message, format_time(now), generation))
    return out


def _condition(type_: str, value: str, reason: str, message: str, when: str, generation: int | None) -> dict:
    c = {"type": type_, "status": value, "reason": reason, "message": message[:1000], "lastTransitionTime": when}
    if generation is not None:
        c["observedGeneration"] = generation
    return c


def queued_counts(counts: dict[str, int], waiting: int, requeued: int) -> dict[str, int]:
    """Trial counts under a Kueue queue: a preempted trial (started, its Job suspended again) is no
    longer running; it waits, pending, until Kueue admits it again."""
    moved = min(requeued, counts.get("running", 0))
    return {
        **counts,
        "running": counts.get("running", 0) - moved,
        "pending": counts.get("pending", 0) + moved,
        "waiting": waiting,
    }


def experiment_status(
    *,
    current: Mapping[str, Any],
    spec: SearchExperimentSpec,
    verdict: Verdict,
    controller_ready: tuple[bool, str, str],
    spec_verdict: SpecVerdict,
    generation: int | None,
    now: datetime,
    summary: Summary,
    best_artifacts: Mapping[str, str] | None = None,
    waiting: int = 0,
    requeued: int = 0,
    front: Front | None = None,
    gpu_hours: float | None = None,
    one_shot: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole status the experiment should show now (camelCase, ready for a merge patch);
    ``summary``: the trial counts and the best trial (the driver keeps both current);
    ``best_artifacts``: where the best trial's weights are, with an artifact store; ``waiting``: of the
    pending trials, those whose Job Kueue holds suspended (shown with ``spec.queueName`` only);
    ``requeued``: of those, trials the driver counts as running because they had started (preempted by
    Kueue, waiting for re-admission): shown as pending and waiting, not as running;
    ``front``: the Pareto front of a multi-objective search (shown bounded, spread along it);
    ``gpu_hours``: the GPU time of the finished trials, when trials ask for GPUs (running trials count
    toward ``maxGpuHours`` as they run, but the status changes only when one ends: no write per pass);
    ``one_shot``: a one-shot search's ``status.oneShot`` (its phase and each phase's record)."""
    counts, best = summary
    done = counts.succeeded + counts.failed + counts.infeasible + counts.pruned
    terminal = verdict.phase in TERMINAL_PHASES
    conditions: list[dict[str, Any]] = list(current.get("conditions") or [])
    ready, ready_reason, ready_message = controller_ready
    conditions = set_condition(conditions, CONTROLLER_READY, ready, ready_reason, ready_message, now, generation)
    conditions = set_condition(
        conditions,
        RUNNING,
        not terminal,
        "Running" if not terminal else verdict.reason,
        verdict.message,
        now,
        generation,
    )
    if terminal:
        conditions = set_condition(conditions, verdict.phase, True, verdict.reason, verdict.message, now, generation)
    conditions = set_condition(
        conditions, SPEC_ACCEPTED, spec_verdict.accepted, spec_verdict.reason, spec_verdict.message, now, generation
    )
    status: dict[str, Any] = {
        "phase": verdict.phase,
        "conditions": conditions,
        "observedGeneration": generation,
        "trials": queued_counts(counts.to_wire(), waiting, requeued) if spec.queue() else counts.to_wire(),
        "progress": f"{done}/{spec.budget.max_trials}",
        "startTime": current.get("startTime") or format_time(now),
        "message": verdict.message,
    }
    if best is not None and best.reward is not None:
        value = finite_or_none(objective_value(spec.objective, best.reward))
        status["bestTrial"] = {
            "name": best.name,
            "architecture": dict(best.architecture),
            "reward": value,
            "metrics": dict(best.metrics),
        }
        if best_artifacts:
            status["bestTrial"]["artifacts"] = dict(best_artifacts)
        status["bestReward"] = value
    if front is not None:
        status["paretoFront"] = front_wire(front.objectives, front.bounded(MAX_FRONT))
        status["paretoSize"] = len(front)
    if gpu_hours is not None:
        status["gpuHours"] = {"used": round(gpu_hours, 6), "limit": spec.budget.max_gpu_hours}
    if one_shot:
        status["oneShot"] = dict(one_shot)
    if terminal:
        status["completionTime"] = current.get("completionTime") or format_time(now)
    # through the API's own model: what the operator writes is what the CRD describes
    return SearchExperimentStatus.model_validate(status).to_wire()


def status_changed(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether writing ``desired`` would change anything the object shows."""
    return any(current.get(k) != v for k, v in desired.items())

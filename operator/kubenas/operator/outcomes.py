"""When is a trial over, and how did it end: read from its pods and its Job.

Success and bad candidates are read from the pod as soon as the trainer container terminates (its
termination message holds the metrics), without waiting for the Job controller to mark the Job
complete: that saves the Job controller's pod-update batching delay on every trial. Retries are the
Job's business (backoffLimit and podFailurePolicy), so any other failure is final only once the Job
says Failed. The judging rule itself is the core's, shared with local mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kubenas.core.outcome import judge
from kubenas.operator.names import BAD_CANDIDATE_EXIT_CODE
from kubenas.operator.views import JobView, PodView

#: Job failure reasons and what they mean for a trial.
_JOB_REASONS = {
    "PodFailurePolicy": "BadCandidate",
    "DeadlineExceeded": "DeadlineExceeded",
    "BackoffLimitExceeded": "RetriesExhausted",
}


@dataclass(frozen=True)
class TrialOutcome:
    """A finished trial: metrics to tell, or a failure with its reason."""

    failed: bool
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    message: str | None = None
    pod_uid: str | None = None  # the pod whose end decided it (for turnaround timing)
    started: str | None = None
    finished: str | None = None


def _ordered(pods: Sequence[PodView]) -> list[PodView]:
    return sorted(pods, key=lambda p: (p.created or "", p.name))


def attempts(pods: Sequence[PodView]) -> int:
    """Pods started for the trial, retries included."""
    return len(pods)


def started_at(pods: Sequence[PodView]) -> str | None:
    """When the trial's first pod started running."""
    times = [p.running_since or (p.terminated.started_at if p.terminated else None) for p in pods]
    known = [t for t in times if t]
    return min(known) if known else None


def is_running(pods: Sequence[PodView]) -> bool:
    return any(p.running_since and not p.terminated for p in pods)


def trial_outcome(
    pods: Sequence[PodView], job: JobView | None, retries: int, pods_listed: bool = False
) -> TrialOutcome | None:
    """The outcome of a trial from what its pods and Job show, or None while it is still going.

    Pods and Jobs arrive on separate watch streams, so a Job can be seen Complete before the pod
    update that made it so. A completed Job without a successful pod is therefore only judged
    ``ResultLost`` when ``pods_listed`` says the pods were just read from the API server.
    """
    ordered = _ordered(pods)
    for n, pod in enumerate(ordered, start=1):
        t = pod.terminated
        if t is None or t.exit_code not in (0, BAD_CANDIDATE_EXIT_CODE):
            continue  # other exits are retried by the Job; its Failed condition is the verdict
        verdict = judge(t.exit_code, t.message, n, retries)
        return TrialOutcome(
            verdict.verdict != "succeeded",
            verdict.metrics if verdict.verdict == "succeeded" else {},
            verdict.reason,
            verdict.message,
            pod.uid,
            started_at(pods),
            t.finished_at,
        )
    if job is not None and job.failed:
        last = next((p for p in reversed(ordered) if p.terminated), None)
        reason = _JOB_REASONS.get(job.reason or "", job.reason or "JobFailed")
        detail = job.message or "the trainer Job failed"
        if last is not None and last.terminated is not None:
            t = last.terminated
            detail += f"; last attempt: exit code {t.exit_code}" + (f" ({t.reason})" if t.reason else "")
        return TrialOutcome(
            True,
            {},
            reason,
            detail,
            last.uid if last else None,
            started_at(pods),
            last.terminated.finished_at if last and last.terminated else None,
        )
    if job is not None and job.complete and pods_listed:
        return TrialOutcome(True, {}, "ResultLost", "the Job completed but its pod is gone; the metrics are lost")
    return None

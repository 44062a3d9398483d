"""When is a trial over, and how did it end: read from its pods and its Job.

Success and bad candidates are read from the pod as soon as the trainer container terminates (its
termination message holds the metrics), without waiting for the Job controller to mark the Job
complete: that saves the Job controller's pod-update batching delay on every trial. Retries are the
Job's business (backoffLimit and podFailurePolicy), so any other failure is final only once the Job
says Failed. What they become is the driver's to judge, with the rule local mode uses too: this
module only turns pods and Jobs into the driver's events.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubenas.core.driver import AttemptEnded, AttemptStarted, Event, TrialLost
from kubenas.core.outcome import reports_bad_candidate
from kubenas.operator.names import FINAL_EXIT_CODES
from kubenas.operator.views import JobView, PodView

#: Job failure reasons and what they mean for a trial.
_JOB_REASONS = {
    "PodFailurePolicy": "BadCandidate",
    "DeadlineExceeded": "DeadlineExceeded",
    "BackoffLimitExceeded": "RetriesExhausted",
}


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


def deciding_pod(pods: Sequence[PodView]) -> PodView | None:
    """The pod whose end decided the trial (the last one that ended)."""
    return next((p for p in reversed(_ordered(pods)) if p.terminated), None)


def decided(events: Sequence[Event]) -> bool:
    """Whether ``events`` end the trial (a result to judge, or the Job's own verdict)."""
    return any(isinstance(e, (AttemptEnded, TrialLost)) for e in events)


def events_of(index: int, pods: Sequence[PodView], job: JobView | None, pods_listed: bool = False) -> list[Event]:
    """What a trial's pods and Job say happened, as events for the driver (which ignores repeats).

    Pods and Jobs arrive on separate watch streams, so a Job can be seen Complete before the pod
    update that made it so. A completed Job without a successful pod is therefore only reported
    ``ResultLost`` when ``pods_listed`` says the pods were just read from the API server.
    """
    if job is not None and job.suspended and not (job.failed or job.complete):
        # queued, or preempted by Kueue: waiting for admission, whatever its stopped pods said
        return []
    if job is not None and job.queued and not job.complete:
        # Kueue's preemption suspends the Job and the Job controller deletes its pods (uncounted): a
        # trainer stopped that way (a partial result, a signal exit) is no result, and the pod may be
        # seen before the Job's suspension on the other watch stream. Re-admitted, the trial runs again.
        pods = [p for p in pods if not (p.deleting and p.terminated is not None)]
    ordered = _ordered(pods)
    events: list[Event] = []
    if is_running(pods):
        events.append(AttemptStarted(index, attempts(pods), started_at(pods)))
    for n, pod in enumerate(ordered, start=1):
        t = pod.terminated
        final = t is not None and (
            t.exit_code == 0 or t.exit_code in FINAL_EXIT_CODES or reports_bad_candidate(t.message)
        )
        if t is None or not final:
            continue  # other exits are retried by the Job; its Failed condition is the verdict
        events.append(AttemptEnded(index, n, t.exit_code, t.message, t.finished_at))
        return events
    if job is not None and job.failed:
        last = deciding_pod(pods)
        reason = _JOB_REASONS.get(job.reason or "", job.reason or "JobFailed")
        detail = job.message or "the trainer Job failed"
        finished = None
        if last is not None and last.terminated is not None:
            t = last.terminated
            detail += f"; last attempt: exit code {t.exit_code}" + (f" ({t.reason})" if t.reason else "")
            finished = t.finished_at
        events.append(TrialLost(index, reason, detail, attempts(pods), finished))
    elif job is not None and job.complete and pods_listed:
        events.append(TrialLost(index, "ResultLost", "the Job completed but its pod is gone; the metrics are lost"))
    return events

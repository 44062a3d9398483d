"""The operator's writes of trials: Trials and Jobs created, results and running marks written.

The reconciler hands the driver's ``Create``, ``Store``, ``MarkRunning``, ``Cancel`` and ``Prune``
commands here, and the curves of running trials.
Creations and result writes run in the background, one task per trial, so a pass never waits on the
API server for them; what fails is written again on a later pass (the names make a repeat harmless)
unless the server refuses it for good, which fails the experiment. A stored result is reported back
(``stored``) so the next pass can tell the driver, which then releases what was asked after it.

A pruned trial's Job is deleted (with its pod, background propagation) as soon as its result is
stored, not before: an operator that dies in between finds the Job still running and the rule
judges the trial again, rather than finding a trial with neither a result nor a Job. A running
trial's curve is written to its status as points arrive, one write per trial in flight (later
points wait for it and go in the next), and always before its result, so the stored curve of a
finished trial is the whole curve the driver judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any

from kubenas.api.v1alpha1 import API_VERSION, SearchExperimentSpec
from kubenas.core.codec import status_wire
from kubenas.core.driver import Create, MarkRunning, Store
from kubenas.core.records import TrialRecord, trial_seed
from kubenas.operator import manifests
from kubenas.operator.failures import PERMANENT_STATUSES, Fatal, Requeue, owned_by
from kubenas.operator.kube import AlreadyExists, ApiError, NotFound
from kubenas.operator.runtime import Runtime
from kubenas.operator.views import format_time, parse_time


class TrialWriter:
    """One experiment's trial writes under way, and what to write again (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        ref: manifests.ExperimentRef,
        log: logging.LoggerAdapter,  # type: ignore[type-arg]
        spec: Callable[[], SearchExperimentSpec | None],
        wake: Callable[[], None],
        wake_later: Callable[[float], None],
        fail: Callable[[Fatal], None],
        event: Callable[[str, str, str], None],
    ) -> None:
        self.runtime = runtime
        self.ref = ref
        self.log = log
        self._spec = spec
        self.wake = wake
        self.wake_later = wake_later
        self.fail = fail
        self.event = event
        #: Trials that exist or are being created (uid when read at the rebuild: Jobs of earlier versions are theirs)
        self.trial_uids: dict[str, str] = {}
        self.creating: dict[str, asyncio.Task[None]] = {}  # Trial and Job writes under way
        self.storing: dict[str, asyncio.Task[None]] = {}  # result writes under way
        self.creates_to_retry: dict[int, Create] = {}
        self.stores_to_retry: dict[int, Store] = {}
        self.stored: list[int] = []  # results stored since the last pass: ResultStored events for the driver
        self.started_at: dict[str, str | None] = {}  # when each running trial's first pod started
        self.jobs_created: set[str] = set()
        self.jobs_seen: set[str] = set()  # trials whose Job the cache has shown: one gone from it was deleted
        self.terminated_at: dict[str, float] = {}  # trainer pod uid -> when its end was first seen
        self.turnarounds: deque[float] = deque()  # ends of trials whose slot waits for the next Job
        self.admitted: set[str] = set()  # active trials whose Job Kueue has admitted (spec.queueName)
        #: where new trainers post their epochs (None: the controller's address is not known yet)
        self.channel: Callable[[], manifests.ProgressChannel | None] = lambda: None
        self.curves: dict[str, asyncio.Task[None]] = {}  # curve writes under way
        self.running_writes: dict[str, asyncio.Task[Any]] = {}  # "Running" status writes under way
        self.curves_due: dict[str, TrialRecord] = {}  # newer curves waiting for the write under way
        self.pruned_at: dict[str, float] = {}  # pruned trial -> when the driver decided (its Job goes once stored)

    @property
    def accepted(self) -> SearchExperimentSpec | None:
        return self._spec()

    # -- the driver's commands ---------------------------------------------------------------
    def create(self, command: Create) -> None:
        self._begin(self.creating, command.trial.name, self._create(command), "create")

    def store(self, command: Store) -> None:
        self._begin(self.storing, command.trial.name, self._store(command), "result")

    def mark_running(self, command: MarkRunning) -> None:
        name = command.trial.name
        self.started_at[name] = self.started_at.get(name) or command.started_at
        task = self.runtime.spawn(self._write_running(command), f"running {name}")
        self.running_writes[name] = task
        task.add_done_callback(lambda t: self._forget(self.running_writes, name, t))

    @staticmethod
    def _forget(tasks: dict[str, asyncio.Task[Any]], name: str, task: asyncio.Task[Any]) -> None:
        if tasks.get(name) is task:  # not a newer write for the same trial
            del tasks[name]

    async def create_now(self, command: Create) -> None:
        """Create a Trial and its Job and wait for them (recovery writes them before anything is told)."""
        await self._create(command)

    def cancel_all(self) -> None:
        for task in [*self.creating.values(), *self.storing.values(), *self.curves.values()]:
            task.cancel()

    # -- turnaround ----------------------------------------------------------------------------
    def note_termination(self, pod_uid: str) -> None:
        """A trainer pod ended (first sight): the turnaround clock for the next trial starts now."""
        self.terminated_at.setdefault(pod_uid, time.monotonic())

    def slot_freed(self, pod_uid: str | None) -> None:
        """The trial whose pod ended is decided: the next Job created (admitted, with Kueue) closes its turnaround."""
        if pod_uid is not None and pod_uid in self.terminated_at:
            self.turnarounds.append(self.terminated_at.pop(pod_uid))

    def note_admission(self, name: str) -> None:
        """Kueue admitted the trial's Job (first sight): with a queue the slot is filled now, not when the
        Job was created suspended, so the turnaround is measured to here."""
        if name not in self.admitted:
            self.admitted.add(name)
            self._observe_turnaround()

    def _observe_turnaround(self) -> None:
        if self.turnarounds:
            elapsed = time.monotonic() - self.turnarounds.popleft()
            self.runtime.metrics.trial_turnaround.labels(self.ref.namespace, self.ref.name).observe(elapsed)

    # -- the writes ----------------------------------------------------------------------------
    def _begin(
        self, tasks: dict[str, asyncio.Task[None]], name: str, work: Coroutine[Any, Any, None], what: str
    ) -> None:
        if name in tasks:
            work.close()
            return
        task = asyncio.get_running_loop().create_task(work, name=f"{what} {name}")
        tasks[name] = task
        task.add_done_callback(lambda _: tasks.pop(name, None))

    async def _create(self, command: Create) -> None:
        """Create a candidate's Trial and Job, side by side. A permanent refusal fails the experiment
        (no retry can fix it); anything else is tried again on a later pass."""
        name = command.trial.name
        self.trial_uids.setdefault(name, "")  # watched from now on (a Job it lacks is created again)
        self.creates_to_retry.pop(command.trial.index, None)
        try:
            outcome = await asyncio.gather(
                self._create_trial(command), self._create_job(command), return_exceptions=True
            )
            for result in outcome:
                if isinstance(result, BaseException):
                    raise result
        except asyncio.CancelledError:
            raise
        except Fatal as exc:
            self.fail(exc)
        except ApiError as exc:
            if exc.status not in PERMANENT_STATUSES:
                self._retry_create(command, exc, 1.0)
            else:
                self.fail(
                    Fatal("TrialRefused", f"the API server refused the Trial or Job {name}: {exc.status} {exc.message}")
                )
        except Exception as exc:  # the next pass creates it again: the names make a repeat harmless
            self._retry_create(command, exc, exc.delay if isinstance(exc, Requeue) else 1.0)

    def _retry_create(self, command: Create, exc: Exception, delay: float) -> None:
        self.runtime.metrics.reconcile_errors.labels(self.ref.namespace, self.ref.name).inc()
        self.log.warning("trial creation failed", extra={"trial": command.trial.name, "error": repr(exc)})
        self.creates_to_retry[command.trial.index] = command
        self.wake_later(delay)

    async def _create_trial(self, command: Create) -> None:
        assert self.accepted is not None
        rec = command.trial
        obj = manifests.trial_object(
            self.ref, self.accepted, rec.index, rec.architecture, command.architecture_id, rec.parents
        )
        try:
            await self.runtime.api.create(obj)
        except AlreadyExists:
            body = await self.runtime.api.get(API_VERSION, "Trial", self.ref.namespace, rec.name)
            if not owned_by(body, self.ref.uid):
                raise Requeue(f"an older experiment's Trial {rec.name} is still being deleted") from None
            if (body.get("spec") or {}).get("architectureId") != command.architecture_id:
                raise Fatal("HistoryConflict", f"Trial {rec.name} exists with another architecture") from None

    async def _create_job(self, command: Create) -> None:
        """Create the trial's Job (owned by the experiment, so it needs no Trial uid)."""
        assert self.accepted is not None
        rec = command.trial
        trial_body = {
            "metadata": {"name": rec.name},
            "spec": {
                "architecture": dict(rec.architecture),
                "architectureId": command.architecture_id,
                "seed": command.seed,
                "parents": list(rec.parents),
            },
        }
        self.jobs_created.add(rec.name)  # before the write: a pass meanwhile must not create it too
        try:
            await self.runtime.api.create(manifests.trainer_job(self.ref, self.accepted, trial_body, self.channel()))
        except AlreadyExists:
            job = await self.runtime.api.get("batch/v1", "Job", self.ref.namespace, rec.name)
            if not (owned_by(job, self.ref.uid) or owned_by(job, self.trial_uids.get(rec.name, self.ref.uid))):
                self.jobs_created.discard(rec.name)
                raise Requeue(f"an older Job {rec.name} is still being deleted") from None
            return
        except BaseException:
            self.jobs_created.discard(rec.name)
            raise
        if not (self.accepted and self.accepted.queue()):  # queued: the admission closes the turnaround
            self._observe_turnaround()

    def create_job_of(self, rec: TrialRecord) -> None:
        """A Trial without its Job (an operator stopped between the two writes): create the Job now."""
        assert self.accepted is not None
        create = Create(rec, "", trial_seed(self.accepted.strategy.seed, rec.index))
        self._begin(self.creating, rec.name, self._create_missing_job(create), "job")

    async def _create_missing_job(self, command: Create) -> None:
        assert self.accepted is not None
        body = await self.runtime.api.get(API_VERSION, "Trial", self.ref.namespace, command.trial.name)
        architecture_id = (body.get("spec") or {}).get("architectureId", "")
        await self._create_job(Create(command.trial, architecture_id, command.seed))

    async def _restore_trial(self, rec: TrialRecord) -> None:
        """Create again a Trial deleted before its result was stored (its Job is the experiment's and
        ran on): the Trials are the search's history, and one missing would leave a gap no restart can
        replay. Its architecture's identity is the space's canonical form, as the controller made it."""
        assert self.accepted is not None
        from kubenas.core.space import build_space

        identity = build_space(self.accepted.search_space).canonical(rec.architecture)
        obj = manifests.trial_object(self.ref, self.accepted, rec.index, rec.architecture, identity, rec.parents)
        with contextlib.suppress(AlreadyExists):
            created = await self.runtime.api.create(obj)
            self.trial_uids[rec.name] = (created.get("metadata") or {}).get("uid", self.ref.uid)
        self.log.warning("deleted trial written again", extra={"trial": rec.name})
        message = f"Trial {rec.name} was deleted before its result was stored: written again"
        self.event("Warning", "TrialRecreated", message)

    async def _store(self, command: Store) -> None:
        """Write a told result on its Trial; once stored, the driver releases what was asked after it."""
        rec = command.trial
        status = status_wire(
            rec, start_time=self.started_at.get(rec.name), completion_time=command.finished_at or _now_text()
        )
        spec = self.accepted
        artifacts = manifests.trial_artifacts(spec, self.ref.name, rec.name) if spec is not None else None
        if artifacts is not None:
            status["artifacts"] = artifacts  # where the trainer wrote its weights, architecture and curve
        body = {"status": status}
        await self._earlier_writes_done(rec.name)
        try:
            try:
                await self.runtime.api.patch(
                    API_VERSION, "Trial", self.ref.namespace, rec.name, body, subresource="status"
                )
            except NotFound:  # deleted while it ran: the history must keep it, so write it again
                await self._restore_trial(rec)
                await self.runtime.api.patch(
                    API_VERSION, "Trial", self.ref.namespace, rec.name, body, subresource="status"
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # written again on a later pass: the record is the driver's, unchanged
            self.runtime.metrics.reconcile_errors.labels(self.ref.namespace, self.ref.name).inc()
            self.log.warning("trial result not written", extra={"trial": rec.name, "error": repr(exc)})
            self.stores_to_retry[rec.index] = command
            self.wake_later(1.0)
            return
        self.stores_to_retry.pop(rec.index, None)
        self.stored.append(rec.index)
        if rec.phase == "Pruned":
            await self._end_pruned(rec.name)
        self._observe_finished(rec, self.started_at.pop(rec.name, None), command.finished_at)
        self.wake()

    # -- pruning and curves ----------------------------------------------------------------------
    def prune(self, rec: TrialRecord) -> None:
        """The stopping rule ended the trial; its Job goes once its result (the next command) is stored."""
        self.pruned_at.setdefault(rec.name, time.monotonic())
        self.curves_due.pop(rec.name, None)

    async def _end_pruned(self, name: str) -> None:
        """Delete a pruned trial's Job and, through background propagation, its pod: the GPU is free."""
        try:
            await self.runtime.api.delete("batch/v1", "Job", self.ref.namespace, name, propagation="Background")
        except Exception as exc:  # the result is stored: a later operator ends the Job (end_pruned_jobs)
            self.log.warning("pruned trial's Job not deleted", extra={"trial": name, "error": repr(exc)})
            return
        decided = self.pruned_at.pop(name, None)
        seconds = round(time.monotonic() - decided, 4) if decided is not None else None
        self.log.info("pruned trial's Job deleted", extra={"trial": name, "seconds_since_decision": seconds})

    def end_pruned_jobs(self, history: Iterable[TrialRecord]) -> None:
        """Jobs of trials stored as Pruned that still run (an operator stopped before deleting them)."""
        indexes = self.runtime.indexes
        assert indexes is not None
        for rec in history:
            if rec.phase != "Pruned":
                continue
            jobs = indexes.job_of(self.ref.namespace, rec.name)
            if any(j.owner_uid == self.ref.uid and not (j.complete or j.failed) for j in jobs):
                self.runtime.spawn(self._end_pruned(rec.name), f"end pruned {rec.name}")

    def write_curve(self, rec: TrialRecord) -> None:
        """Write a running trial's curve to its status (coalesced: one write per trial in flight)."""
        name = rec.name
        if name in self.storing or name in self.pruned_at or name not in self.trial_uids:
            return
        if name in self.curves:
            self.curves_due[name] = rec
            return
        task = asyncio.get_running_loop().create_task(self._write_curve(rec), name=f"curve {name}")
        self.curves[name] = task

    async def _write_curve(self, rec: TrialRecord) -> None:
        name = rec.name
        try:
            while rec is not None:
                patch = {"status": {"curve": status_wire(rec).get("curve", [])}}
                try:
                    await self.runtime.api.patch(
                        API_VERSION, "Trial", self.ref.namespace, name, patch, subresource="status"
                    )
                except Exception as exc:  # the next point, or the result, writes it again
                    self.log.warning("trial curve not written", extra={"trial": name, "error": repr(exc)})
                rec = self.curves_due.pop(name, None)
        finally:
            self.curves.pop(name, None)

    async def _earlier_writes_done(self, name: str) -> None:
        """Before a result: no earlier status write may land after it, neither a curve (the result's curve
        is the whole one) nor the trial's "Running" mark (a loaded API server may answer them out of
        order, which left finished trials showing Running)."""
        self.curves_due.pop(name, None)
        for task in (self.curves.get(name), self.running_writes.get(name)):
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(task)

    async def _write_running(self, command: MarkRunning) -> None:
        rec = command.trial
        patch = {"status": status_wire(rec, start_time=command.started_at)}
        await self.runtime.api.patch(API_VERSION, "Trial", self.ref.namespace, rec.name, patch, subresource="status")

    async def cancel(self, rec: TrialRecord) -> None:
        """Stop a trial the finished search no longer needs: its Job goes, its Trial says why."""
        await self._earlier_writes_done(rec.name)
        with contextlib.suppress(NotFound):
            await self.runtime.api.delete("batch/v1", "Job", self.ref.namespace, rec.name)
        patch: dict[str, Any] = {"status": {"phase": rec.phase, "reason": rec.reason, "message": rec.message}}
        if rec.gpu_seconds is not None:
            patch["status"]["gpuSeconds"] = round(rec.gpu_seconds, 3)  # what budget.maxGpuHours counted
        with contextlib.suppress(NotFound):
            await self.runtime.api.patch(
                API_VERSION, "Trial", self.ref.namespace, rec.name, patch, subresource="status"
            )

    def retry_failed(self) -> None:
        """Writes that failed on an earlier pass go out again."""
        for command in list(self.creates_to_retry.values()):
            self._begin(self.creating, command.trial.name, self._create(command), "create")
        for store in list(self.stores_to_retry.values()):
            self._begin(self.storing, store.trial.name, self._store(store), "result")

    async def done(self) -> None:
        """Wait for the Trial and Job creations and the result writes under way."""
        while self.creating or self.storing:
            await asyncio.gather(*self.creating.values(), *self.storing.values(), return_exceptions=True)

    def _observe_finished(self, rec: TrialRecord, started: str | None, finished: str | None) -> None:
        assert self.accepted is not None and self.runtime.indexes is not None
        m, labels = self.runtime.metrics, (self.ref.namespace, self.ref.name)
        start, end = parse_time(started), parse_time(finished)
        if start and end:
            m.trial_duration.labels(*labels).observe(max(0.0, (end - start).total_seconds()))
        gpus = manifests.gpus_of(self.accepted.trial_template.resources)
        if gpus:
            pods = self.runtime.indexes.pods_of(self.ref.namespace, rec.name)
            m.gpu_seconds.labels(*labels).inc(gpus * sum(p.terminated.seconds() for p in pods if p.terminated))
        extra = {"trial": rec.name, "phase": rec.phase, "reward": rec.reward, "reason": rec.reason}
        self.log.info("trial finished", extra=extra)
        if rec.phase in ("Failed", "Infeasible"):
            self.event(
                "Warning",
                "TrialFailed" if rec.phase == "Failed" else "TrialInfeasible",
                f"{rec.name}: {rec.reason or rec.phase}: {rec.message or ''}".rstrip(": "),
            )


def _now_text() -> str:
    return format_time(datetime.now(UTC))

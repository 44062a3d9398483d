"""One experiment's reconciler: the operator's executor of the core's experiment driver.

Each experiment has one reconciler with one task. Watch events (Trial, Job, Pod, EndpointSlice and
the experiment itself) only *wake* it; events that arrive during a pass coalesce into one more pass.
Every decision is the :class:`~kubenas.core.driver.Driver`'s, the same one local mode and the
benchmark run: this module reads pods and Jobs into driver events and carries the driver's commands
out as Trials, Jobs, status writes and calls to the controller pod. Everything it creates has a
deterministic name, so a repeated create is an ``AlreadyExists``, never a duplicate.

A pass, in order:

1. the accepted spec (the Secret holds it and the controller's token) and the controller's objects;
2. the driver, rebuilt from the Trials on the first pass; the controller, reached at its pod IP, is
   replayed from the driver's history whenever it is new to this process or restarted;
3. events: results stored since the last pass, and the pods and Jobs of the active trials only;
4. the driver's commands: asks and tells to the controller in order, creations and result writes in
   the background (the driver holds a creation back until the results told before it are stored,
   which keeps replay exact); then the status.

A crash at any point loses nothing: a new process rebuilds the driver from the Trials, and what was
told but not stored is judged and told again from the pods.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from kubenas.api.v1alpha1 import API_VERSION, SearchExperimentSpec
from kubenas.controller.protocol import State
from kubenas.core.codec import status_wire
from kubenas.core.driver import (
    AskFor,
    Cancel,
    Candidate,
    Command,
    Create,
    Driver,
    Event,
    Finish,
    MarkRunning,
    Proposed,
    ResultStored,
    Store,
    Tell,
    Tick,
)
from kubenas.core.engine import summarize
from kubenas.core.errors import KubenasError, SpecError
from kubenas.core.records import TrialRecord, objective_value, trial_name, trial_seed
from kubenas.core.spec_changes import describe_budget_change, judge_edit
from kubenas.operator import manifests, names, outcomes, status
from kubenas.operator.controller_client import (
    ControllerClient,
    ControllerOutOfSync,
    ControllerRefused,
    ControllerUnavailable,
    Endpoint,
)
from kubenas.operator.kube import AlreadyExists, ApiError, NotFound
from kubenas.operator.recovery import recovery_step
from kubenas.operator.runtime import Runtime
from kubenas.operator.status_writer import StatusWriter
from kubenas.operator.views import JobView, PodView, format_time, parse_time, resource_version

log = logging.getLogger("kubenas.operator")
#: answers of the API server that no retry can change (a bad request, forbidden, invalid)
PERMANENT_STATUSES = frozenset({400, 403, 422})


class ExperimentLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Every line names its namespace and experiment, and keeps the call's own ``extra`` fields too
    (the standard adapter replaces them)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


class Fatal(KubenasError):
    """The experiment cannot go on: it ends Failed with this reason."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


class Requeue(KubenasError):
    """Nothing is wrong, but the pass cannot finish yet (an old object is still being deleted)."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        self.delay = delay
        super().__init__(message)


def _now() -> datetime:
    return datetime.now(UTC)


def _now_text() -> str:
    return format_time(_now())


class ExperimentReconciler:
    """State and steps of one experiment's reconcile loop (see the module docstring)."""

    def __init__(self, runtime: Runtime, body: Mapping[str, Any]) -> None:
        self.runtime = runtime
        self.namespace: str = body["metadata"]["namespace"]
        self.name: str = body["metadata"]["name"]
        self.uid: str = body["metadata"]["uid"]
        self.body: dict[str, Any] = _plain(body)
        self.ref = manifests.ExperimentRef(self.namespace, self.name, self.uid)
        self.log = ExperimentLog(log, {"namespace": self.namespace, "experiment": self.name})
        # what this process knows beyond the cache
        self.accepted: SearchExperimentSpec | None = None
        self.token: str | None = None
        self.children_at: float | None = None
        self.synced: tuple[Endpoint, str] | None = None
        self.driver: Driver | None = None  # rebuilt from the Trials on the first pass that reaches the controller
        #: Trials that exist or are being created (uid when read at the rebuild: Jobs of earlier versions are theirs)
        self.trial_uids: dict[str, str] = {}
        self.creating: dict[str, asyncio.Task[None]] = {}  # Trial and Job writes under way
        self.storing: dict[str, asyncio.Task[None]] = {}  # result writes under way
        self.creates_to_retry: dict[int, Create] = {}
        self.stores_to_retry: dict[int, Store] = {}
        self.stored: list[int] = []  # results stored since the last pass: ResultStored events for the driver
        self.started_at: dict[str, str | None] = {}  # when each running trial's first pod started
        self.fatal: Fatal | None = None
        self.jobs_created: set[str] = set()
        self.terminated_at: dict[str, float] = {}
        self.turnarounds: deque[float] = deque()
        self.refusal_reported: int | None = None
        self.controller_ready: tuple[bool, str, str] = (False, "ControllerStarting", "creating the controller")
        self.spec_verdict = status.SpecVerdict(True)
        self.final: status.Verdict | None = None  # set once the search is over, before the status says so
        self.scaled_down = False
        self.best_name: str | None = ((self.body.get("status") or {}).get("bestTrial") or {}).get("name")
        self.status_writer = StatusWriter(self._write_status, runtime.config.status_interval_s, self.log)
        # the loop
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failures = 0
        self.stopped = False

    # -- the loop ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"reconcile {self.name}")
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def wake_later(self, delay: float) -> None:
        """Reconcile again after ``delay`` seconds (a retry or a deadline), unless woken sooner."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def stop(self) -> None:
        self.stopped = True
        if self._timer is not None:
            self._timer.cancel()
        for task in [*self.creating.values(), *self.storing.values()]:
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.status_writer.close()

    async def _run(self) -> None:
        while not self.stopped:
            await self._wake.wait()
            self._wake.clear()
            await self._pass()

    async def _pass(self) -> None:
        m = self.runtime.metrics
        labels = (self.namespace, self.name)
        started = time.perf_counter()
        m.reconciles.labels(*labels).inc()
        try:
            await self.reconcile()
            self._failures = 0
        except ControllerOutOfSync as exc:
            self.log.info("controller out of sync; replaying", extra={"detail": str(exc)})
            self.synced = None
            self._retry(exc, immediate=self._failures < 3)
        except ControllerUnavailable as exc:
            self.synced = None
            self.controller_ready = (False, "ControllerUnavailable", str(exc))
            self._retry(exc)
        except Requeue as exc:
            self._retry(exc, delay=exc.delay)
        except ApiError as exc:
            if exc.status in PERMANENT_STATUSES:  # no retry can fix it: say so once, with the server's words
                await self._fail(
                    Fatal("Refused", f"the API server refused a write: {exc.status} {exc.reason}: {exc.message}")
                )
            else:
                self._retry(exc)
        except (Fatal, ControllerRefused) as exc:
            await self._fail(exc)
        except Exception as exc:
            self.log.exception("reconcile failed", extra={"error": repr(exc)})
            self._retry(exc)
        finally:
            m.reconcile_duration.labels(*labels).observe(time.perf_counter() - started)

    def _retry(self, exc: Exception, immediate: bool = False, delay: float | None = None) -> None:
        self._failures += 1
        self.runtime.metrics.reconcile_errors.labels(self.namespace, self.name).inc()
        if immediate:
            self.wake()
            return
        backoff = delay or min(self.runtime.config.max_backoff_s, 0.1 * 2 ** min(self._failures, 12))
        self.log.warning(
            "reconcile will be retried", extra={"error": repr(exc), "retry_in_s": backoff, "failures": self._failures}
        )
        self.wake_later(backoff)

    # -- inputs from the handlers ------------------------------------------------------------
    def observe_experiment(self, body: Mapping[str, Any]) -> None:
        """Keep the newest copy of the experiment (watch events and our own status patches race)."""
        if resource_version(body) >= resource_version(self.body):
            self.body = _plain(body)

    def note_termination(self, pod_uid: str) -> None:
        """A trainer pod ended (first sight): the turnaround clock for the next trial starts now."""
        self.terminated_at.setdefault(pod_uid, time.monotonic())

    # -- the pass ----------------------------------------------------------------------------
    @property
    def phase(self) -> str:
        return (self.body.get("status") or {}).get("phase") or "Pending"

    async def reconcile(self) -> None:
        if self.stopped or self.body["metadata"].get("deletionTimestamp"):
            return
        if self.fatal is not None:
            raise self.fatal
        spec = self._spec()
        await self._load_accepted(spec)
        assert self.accepted is not None
        self._judge_edit(spec)
        if self.final is not None or self.phase in status.TERMINAL_PHASES:
            await self._settle_finished()
            return
        if self.children_at is None:
            await self._ensure_controller()
        endpoint = self._endpoint()
        if endpoint is None:
            if time.monotonic() - (self.children_at or 0.0) > 30.0:
                await self._ensure_controller()  # deleted by hand? create it again
            self.controller_ready = (False, "ControllerStarting", "waiting for the controller pod to be ready")
            self._publish(status.Verdict(self._running_phase(), "ControllerStarting", "waiting for the controller pod"))
            self.wake_later(30.0)  # re-check the controller's objects if nothing else wakes us
            return
        client = ControllerClient(
            self.runtime.http,
            endpoint,
            observer=lambda path, s: self.runtime.metrics.controller_calls.labels(path).observe(s),
        )
        driver = self.driver
        if driver is None or self.synced is None or self.synced[0] != client.endpoint:
            driver = await self._sync(client)
        if driver.spec is not self.accepted:
            driver.respec(self.accepted)
        self._retry_writes()
        commands = driver.handle(*await self._observe(driver))
        await self._carry_out(client, driver, commands)
        if driver.finished is not None:
            await self._finish(driver.finished)
            return
        self._arm_deadline()
        message = driver.waiting or f"{driver.active} trials active"
        self._publish(status.Verdict(self._running_phase(), "Running", message))

    # -- 1. spec, Secret, controller objects -------------------------------------------------
    def _spec(self) -> SearchExperimentSpec:
        problem = names.name_problem(self.name)
        if problem:
            raise Fatal("InvalidName", problem)
        try:
            spec = SearchExperimentSpec.model_validate(self.body.get("spec") or {})
            manifests.trainer_image(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            path = ".".join(str(p) for p in first["loc"])
            raise Fatal("InvalidSpec", f"spec.{path}: {first['msg']}") from None
        except SpecError as exc:
            raise Fatal("InvalidSpec", str(exc)) from None
        return spec

    async def _load_accepted(self, spec: SearchExperimentSpec) -> None:
        """Read the token and accepted spec from the Secret; create both on first sight."""
        if self.accepted is not None:
            return
        try:
            secret = await self.runtime.api.get("v1", "Secret", self.namespace, names.controller_name(self.name))
        except NotFound:
            token = secrets.token_urlsafe(32)
            try:
                await self.runtime.api.create(manifests.controller_secret(self.ref, token, spec))
            except AlreadyExists:
                raise Requeue("the controller Secret appeared meanwhile", 0.1) from None
            self.token, self.accepted = token, spec
            self._event(
                "Normal", "Started", f"search started: {spec.strategy.name}, maxTrials={spec.budget.max_trials}"
            )
            return
        if not _owned_by(secret, self.uid):
            raise Requeue("an older experiment's controller Secret is still being deleted")
        data = secret.get("data") or {}
        self.token = base64.b64decode(data.get(names.TOKEN_KEY, "")).decode()
        stored = data.get(names.SPEC_KEY)
        self.accepted = SearchExperimentSpec.model_validate(json.loads(base64.b64decode(stored))) if stored else spec

    def _judge_edit(self, spec: SearchExperimentSpec) -> None:
        assert self.accepted is not None
        generation = self.body["metadata"].get("generation")
        accepted, verdict = judge_edit(self.accepted, spec)
        self.spec_verdict = verdict
        if not verdict.accepted:
            if self.refusal_reported != generation:
                self.refusal_reported = generation
                self.log.warning("spec edit refused", extra={"reason": verdict.reason, "detail": verdict.message})
                self._event("Warning", "SpecChangeRefused", verdict.message)
            return
        if accepted is not self.accepted:
            change = describe_budget_change(self.accepted, accepted)
            self.runtime.spawn(self._store_accepted(accepted), f"store spec {self.name}")
            self.accepted = accepted
            self.log.info("budget changed", extra={"change": change})
            self._event("Normal", "BudgetChanged", change)

    async def _store_accepted(self, spec: SearchExperimentSpec) -> None:
        patch = {"stringData": {names.SPEC_KEY: manifests.spec_json(spec)}}
        await self.runtime.api.patch("v1", "Secret", self.namespace, names.controller_name(self.name), patch)

    async def _ensure_controller(self) -> None:
        """Create the controller's Service and Deployment (already there is fine)."""
        assert self.accepted is not None
        created = []
        recheck = self.children_at is not None  # later checks read first: no failed writes every 30 s
        for obj in (manifests.controller_service(self.ref), manifests.controller_deployment(self.ref, self.accepted)):
            if recheck and await self._exists(obj):
                continue
            try:
                await self.runtime.api.create(obj)
                created.append(f"{obj['kind']} {obj['metadata']['name']}")
            except AlreadyExists:
                pass
        if created:
            self._event("Normal", "ControllerCreated", "created " + ", ".join(created))
        self.children_at = time.monotonic()

    async def _exists(self, obj: Mapping[str, Any]) -> bool:
        try:
            await self.runtime.api.get(obj["apiVersion"], obj["kind"], self.namespace, obj["metadata"]["name"])
        except NotFound:
            return False
        return True

    def _endpoint(self) -> Endpoint | None:
        indexes = self.runtime.indexes
        assert indexes is not None and self.token is not None
        service = names.controller_name(self.name)
        for view in indexes.endpoints_of(self.namespace, self.name):
            if view.service == service and view.addresses:
                return Endpoint(view.addresses[0], view.port or names.CONTROLLER_PORT, self.token)
        return None

    # -- the history ---------------------------------------------------------------------------
    def _history(self) -> dict[int, TrialRecord]:
        """The Trials in the cache that this experiment owns, as records by index (read once, on rebuild)."""
        indexes = self.runtime.indexes
        assert indexes is not None
        out: dict[int, TrialRecord] = {}
        for view in indexes.trials_of(self.namespace, self.name):
            if view.owner_uid == self.uid:
                out[view.index] = view.record()
                self.trial_uids[view.name] = view.uid
        return out

    def _records(self) -> list[TrialRecord]:
        """Every trial known now: the driver's when it runs, the cache's before (and for a finished search)."""
        if self.driver is not None:
            return self.driver.trials
        if self.runtime.indexes is None:
            return []
        return [rec for _, rec in sorted(self._history().items())]

    # -- 2. the controller ---------------------------------------------------------------------
    async def _sync(self, client: ControllerClient) -> Driver:
        """Rebuild the driver from the Trials (first pass) and the controller's strategy from the driver.

        The controller is always replayed when it is first reached or has restarted: its state is a
        function of the history, so a replay makes it exactly what the recorded history says, whatever
        it did before (asks the operator never stored are asked again and answer the same).
        """
        assert self.accepted is not None
        started = time.perf_counter()
        spec = self.accepted.to_wire()
        if self.driver is None:
            history = self._history()
            step = recovery_step(list(history.values()))
            while step is not None:  # both processes were lost while Trials were being written
                self.log.warning("history has unwritten candidates", extra={"from": step.index, "count": step.count})
                await client.replay(self.name, spec, step.prefix)
                candidates, _ = await client.ask(step.index, step.count)
                for candidate in candidates:
                    if candidate.index not in history:
                        history[candidate.index] = await self._recreate(candidate)
                step = recovery_step(list(history.values()))
            records = [history[i] for i in sorted(history)]
            self.driver = Driver(self.accepted, records, name_prefix=self.name, elapsed_seconds=self._elapsed() or 0.0)
        trials = self.driver.trials
        state = await client.replay(self.name, spec, trials)
        self.runtime.metrics.controller_replays.labels(self.namespace, self.name).inc()
        seconds = round(time.perf_counter() - started, 4)
        told = self.driver.told
        self.log.info("controller replayed", extra={"trials": len(trials), "told": told, "seconds": seconds})
        if trials:
            self._event(
                "Normal",
                "ControllerReplayed",
                f"replayed {len(trials)} trials ({told} results) into the controller in {seconds}s",
            )
        self.synced = (client.endpoint, state.instance)
        self.controller_ready = (True, "Ready", f"controller at {client.endpoint.url}, {state.asked} candidates asked")
        return self.driver

    async def _recreate(self, candidate: Candidate) -> TrialRecord:
        """A Trial found missing by recovery, written (with its Job) before anything is told."""
        assert self.accepted is not None
        record = TrialRecord(
            index=candidate.index,
            architecture=dict(candidate.architecture),
            name=trial_name(self.name, candidate.index),
        )
        create = Create(record, candidate.architecture_id, trial_seed(self.accepted.strategy.seed, candidate.index))
        await self._create(create)
        return record

    def _check(self, state: State) -> None:
        if self.synced is None or state.instance != self.synced[1]:
            raise ControllerOutOfSync("the controller restarted")

    # -- 3. what happened --------------------------------------------------------------------
    async def _observe(self, driver: Driver) -> list[Event]:
        """Events for the active trials, read from their pods and Jobs (O(active trials), not O(history))."""
        indexes = self.runtime.indexes
        assert indexes is not None
        events: list[Event] = [Tick(self._elapsed() or 0.0)]
        events.extend(ResultStored(i) for i in self.stored)
        self.stored.clear()
        for rec in driver.active_trials():
            name = rec.name
            if name in self.creating or name not in self.trial_uids:
                continue  # its Trial and Job are being written, or the driver holds its creation back
            owners = (self.uid, self.trial_uids.get(name, self.uid))  # Jobs of an earlier version: the Trial's
            jobs = [j for j in indexes.job_of(self.namespace, name) if j.owner_uid in owners]
            if not jobs:
                if name not in self.jobs_created and rec.index not in self.creates_to_retry:
                    self._spawn_job(rec)
                continue
            pods = [p for p in indexes.pods_of(self.namespace, name) if p.owner_uid == jobs[0].uid]
            seen = outcomes.events_of(rec.index, pods, jobs[0])
            if not outcomes.decided(seen) and jobs[0].complete:
                seen = await self._confirm_lost_result(rec, jobs[0])
            if outcomes.decided(seen):
                self.started_at[name] = self.started_at.get(name) or outcomes.started_at(pods)
                deciding = outcomes.deciding_pod(pods)
                if deciding is not None and deciding.uid in self.terminated_at:
                    self.turnarounds.append(self.terminated_at.pop(deciding.uid))
            events.extend(seen)
        return events

    async def _confirm_lost_result(self, rec: TrialRecord, job: JobView) -> list[Event]:
        """A Job completed without a pod result in the cache: read the pods from the API server to be sure."""
        bodies = await self.runtime.api.list("v1", "Pod", self.namespace, {names.LABEL_TRIAL: rec.name})
        pods = [PodView.parse(b) for b in bodies]
        return outcomes.events_of(rec.index, pods, job, pods_listed=True)

    # -- 4. carrying the driver's commands out -------------------------------------------------
    async def _carry_out(self, client: ControllerClient, driver: Driver, commands: list[Command]) -> None:
        """The driver's commands, in order. Strategy calls are awaited one by one (their order is the
        replay order); writes go on in the background. A failed strategy call stops the strategy calls
        after it, but every write still goes out: the records they store are the driver's, whatever the
        controller saw, and the next pass replays the controller from them."""
        queue: deque[Command] = deque(commands)
        failure: BaseException | None = None
        while queue:
            command = queue.popleft()
            if isinstance(command, AskFor):
                if failure is None:
                    try:
                        candidates, state = await client.ask(command.index, command.count)
                        self._check(state)
                    except (ControllerOutOfSync, ControllerUnavailable, ControllerRefused) as exc:
                        failure = exc
                    else:
                        queue.extend(driver.handle(Proposed(tuple(candidates))))
                        continue
                driver.ask_lost()
            elif isinstance(command, Tell):
                if failure is None:
                    try:
                        _, state = await client.tell(command.trial)
                        self._check(state)
                    except (ControllerOutOfSync, ControllerUnavailable, ControllerRefused) as exc:
                        failure = exc
            elif isinstance(command, Create):
                self._begin(self.creating, command.trial.name, self._create(command), "create")
            elif isinstance(command, Store):
                self._begin(self.storing, command.trial.name, self._store(command), "result")
            elif isinstance(command, MarkRunning):
                self.started_at[command.trial.name] = self.started_at.get(command.trial.name) or command.started_at
                self.runtime.spawn(self._write_running(command), f"running {command.trial.name}")
            elif isinstance(command, Cancel):
                await self._cancel(command.trial)
            # Relaunch: the Job's backoff starts the next attempt; Finish: read by the pass from the driver
        if failure is not None:
            if not isinstance(failure, ControllerRefused):
                self.synced = None
            raise failure

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
            self.fatal = exc
            self.wake()
        except ApiError as exc:
            if exc.status not in PERMANENT_STATUSES:
                self._retry_create(command, exc, 1.0)
            else:
                self.fatal = Fatal(
                    "TrialRefused", f"the API server refused the Trial or Job {name}: {exc.status} {exc.message}"
                )
                self.wake()
        except Exception as exc:  # the next pass creates it again: the names make a repeat harmless
            self._retry_create(command, exc, exc.delay if isinstance(exc, Requeue) else 1.0)

    def _retry_create(self, command: Create, exc: Exception, delay: float) -> None:
        self.runtime.metrics.reconcile_errors.labels(self.namespace, self.name).inc()
        self.log.warning("trial creation failed", extra={"trial": command.trial.name, "error": repr(exc)})
        self.creates_to_retry[command.trial.index] = command
        self.wake_later(delay)

    async def _create_trial(self, command: Create) -> None:
        assert self.accepted is not None
        rec = command.trial
        obj = manifests.trial_object(self.ref, self.accepted, rec.index, rec.architecture, command.architecture_id)
        try:
            await self.runtime.api.create(obj)
        except AlreadyExists:
            body = await self.runtime.api.get(API_VERSION, "Trial", self.namespace, rec.name)
            if not _owned_by(body, self.uid):
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
            },
        }
        self.jobs_created.add(rec.name)  # before the write: a pass meanwhile must not create it too
        try:
            await self.runtime.api.create(manifests.trainer_job(self.ref, self.accepted, trial_body))
        except AlreadyExists:
            job = await self.runtime.api.get("batch/v1", "Job", self.namespace, rec.name)
            if not (_owned_by(job, self.uid) or _owned_by(job, self.trial_uids.get(rec.name, self.uid))):
                self.jobs_created.discard(rec.name)
                raise Requeue(f"an older Job {rec.name} is still being deleted") from None
            return
        except BaseException:
            self.jobs_created.discard(rec.name)
            raise
        if self.turnarounds:
            elapsed = time.monotonic() - self.turnarounds.popleft()
            self.runtime.metrics.trial_turnaround.labels(self.namespace, self.name).observe(elapsed)

    def _spawn_job(self, rec: TrialRecord) -> None:
        """A Trial without its Job (an operator stopped between the two writes): create the Job now."""
        assert self.accepted is not None
        create = Create(rec, "", trial_seed(self.accepted.strategy.seed, rec.index))
        self._begin(self.creating, rec.name, self._create_missing_job(create), "job")

    async def _create_missing_job(self, command: Create) -> None:
        assert self.accepted is not None
        body = await self.runtime.api.get(API_VERSION, "Trial", self.namespace, command.trial.name)
        architecture_id = (body.get("spec") or {}).get("architectureId", "")
        await self._create_job(Create(command.trial, architecture_id, command.seed))

    async def _store(self, command: Store) -> None:
        """Write a told result on its Trial; once stored, the driver releases what was asked after it."""
        rec = command.trial
        body = {
            "status": status_wire(
                rec, start_time=self.started_at.get(rec.name), completion_time=command.finished_at or _now_text()
            )
        }
        try:
            await self.runtime.api.patch(API_VERSION, "Trial", self.namespace, rec.name, body, subresource="status")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # written again on a later pass: the record is the driver's, unchanged
            self.runtime.metrics.reconcile_errors.labels(self.namespace, self.name).inc()
            self.log.warning("trial result not written", extra={"trial": rec.name, "error": repr(exc)})
            self.stores_to_retry[rec.index] = command
            self.wake_later(1.0)
            return
        self.stores_to_retry.pop(rec.index, None)
        self.stored.append(rec.index)
        self._observe_finished(rec, self.started_at.pop(rec.name, None), command.finished_at)
        self.wake()

    async def _write_running(self, command: MarkRunning) -> None:
        rec = command.trial
        patch = {"status": status_wire(rec, start_time=command.started_at)}
        await self.runtime.api.patch(API_VERSION, "Trial", self.namespace, rec.name, patch, subresource="status")

    async def _cancel(self, rec: TrialRecord) -> None:
        """Stop a trial the finished search no longer needs: its Job goes, its Trial says why."""
        with contextlib.suppress(NotFound):
            await self.runtime.api.delete("batch/v1", "Job", self.namespace, rec.name)
        patch = {"status": {"phase": rec.phase, "reason": rec.reason, "message": rec.message}}
        with contextlib.suppress(NotFound):
            await self.runtime.api.patch(API_VERSION, "Trial", self.namespace, rec.name, patch, subresource="status")

    def _retry_writes(self) -> None:
        """Writes that failed on an earlier pass go out again."""
        for command in list(self.creates_to_retry.values()):
            self._begin(self.creating, command.trial.name, self._create(command), "create")
        for store in list(self.stores_to_retry.values()):
            self._begin(self.storing, store.trial.name, self._store(store), "result")

    async def writes_done(self) -> None:
        """Wait for the Trial and Job creations and the result writes under way."""
        while self.creating or self.storing:
            await asyncio.gather(*self.creating.values(), *self.storing.values(), return_exceptions=True)

    def _observe_finished(self, rec: TrialRecord, started: str | None, finished: str | None) -> None:
        assert self.accepted is not None and self.runtime.indexes is not None
        m, labels = self.runtime.metrics, (self.namespace, self.name)
        start, end = parse_time(started), parse_time(finished)
        if start and end:
            m.trial_duration.labels(*labels).observe(max(0.0, (end - start).total_seconds()))
        gpus = manifests.gpus_of(self.accepted.trial_template.resources)
        if gpus:
            pods = self.runtime.indexes.pods_of(self.namespace, rec.name)
            m.gpu_seconds.labels(*labels).inc(gpus * sum(p.terminated.seconds() for p in pods if p.terminated))
        extra = {"trial": rec.name, "phase": rec.phase, "reward": rec.reward, "reason": rec.reason}
        self.log.info("trial finished", extra=extra)
        if rec.phase in ("Failed", "Infeasible"):
            self._event(
                "Warning",
                "TrialFailed" if rec.phase == "Failed" else "TrialInfeasible",
                f"{rec.name}: {rec.reason or rec.phase}: {rec.message or ''}".rstrip(": "),
            )

    # -- the end -------------------------------------------------------------------------------
    async def _finish(self, action: Finish) -> None:
        await self.writes_done()
        self.turnarounds.clear()
        verdict = status.Verdict(action.phase, action.reason, action.message)
        self.final = verdict
        cancelled = sum(1 for rec in self._records() if rec.reason == "Cancelled")
        self.log.info(
            "experiment finished",
            extra={"phase": action.phase, "reason": action.reason, "detail": action.message, "cancelled": cancelled},
        )
        self._event("Normal" if action.phase == "Succeeded" else "Warning", action.reason, action.message)
        await self._scale_controller_down()
        self._publish(verdict, urgent=True)

    async def _fail(self, exc: Fatal | ControllerRefused) -> None:
        reason = exc.reason if isinstance(exc, Fatal) else exc.code
        message = exc.message
        self.log.error("experiment failed", extra={"reason": reason, "detail": message})
        self._event("Warning", reason, message)
        self.final = status.Verdict("Failed", reason, message)
        if self.accepted is None:
            self._publish_invalid(reason, message)
            return
        await self._scale_controller_down()
        self._publish(status.Verdict("Failed", reason, message), urgent=True)

    async def _settle_finished(self) -> None:
        """A finished experiment keeps its status current (spec edits) and holds no controller pod."""
        await self._scale_controller_down()
        verdict = self.final or status.Verdict(
            self.phase, _terminal_reason(self.body), (self.body.get("status") or {}).get("message") or ""
        )
        if self.accepted is None:
            self._publish_invalid(verdict.reason, verdict.message)
        else:
            self._publish(verdict)

    async def _scale_controller_down(self) -> None:
        """Stop the controller pod (once; a restarted operator only reads that it is stopped)."""
        if self.scaled_down:
            return
        name = names.controller_name(self.name)
        with contextlib.suppress(NotFound):
            deployment = await self.runtime.api.get("apps/v1", "Deployment", self.namespace, name)
            if (deployment.get("spec") or {}).get("replicas") != 0:
                await self.runtime.api.patch("apps/v1", "Deployment", self.namespace, name, {"spec": {"replicas": 0}})
        self.scaled_down = True
        self.controller_ready = (False, "ExperimentFinished", "the controller is stopped once the search is over")

    # -- status, events, metrics ---------------------------------------------------------------
    def _running_phase(self) -> str:
        return "Running" if self.driver is not None and self.driver.counts.total else "Pending"

    def _elapsed(self) -> float | None:
        started = parse_time((self.body.get("status") or {}).get("startTime"))
        return (_now() - started).total_seconds() if started else 0.0

    def _arm_deadline(self) -> None:
        assert self.accepted is not None
        limit = self.accepted.budget.max_duration_seconds()
        elapsed = self._elapsed()
        if limit is not None and elapsed is not None and elapsed < limit:
            self.wake_later(limit - elapsed + 0.05)

    def _publish(self, verdict: status.Verdict, urgent: bool = False) -> None:
        """Status, metrics and the best-trial event from the driver's summary (O(1): no pass over history)."""
        assert self.accepted is not None
        if self.driver is not None:
            summary = (self.driver.counts, self.driver.best)
        else:
            summary = summarize(self.accepted, self._records())
        current = self.body.get("status") or {}
        desired = status.experiment_status(
            current=current,
            spec=self.accepted,
            verdict=verdict,
            controller_ready=self.controller_ready,
            spec_verdict=self.spec_verdict,
            generation=self.body["metadata"].get("generation"),
            now=_now(),
            summary=summary,
        )
        self._metrics(desired, summary[1])
        self.runtime.set_phase((self.namespace, self.name), desired["phase"])
        if status.status_changed(current, desired):
            self.status_writer.submit(desired, urgent=urgent or desired["phase"] != current.get("phase"))

    def _publish_invalid(self, reason: str, message: str) -> None:
        current = self.body.get("status") or {}
        now = _now()
        conditions = status.set_condition(
            current.get("conditions") or [],
            status.FAILED,
            True,
            reason,
            message,
            now,
            self.body["metadata"].get("generation"),
        )
        desired = {
            "phase": "Failed",
            "conditions": conditions,
            "message": message,
            "observedGeneration": self.body["metadata"].get("generation"),
        }
        self.runtime.set_phase((self.namespace, self.name), "Failed")
        if status.status_changed(current, desired):
            self.status_writer.submit(desired, urgent=True)

    def _metrics(self, desired: Mapping[str, Any], best: TrialRecord | None) -> None:
        m, labels = self.runtime.metrics, (self.namespace, self.name)
        m.set_trials(*labels, desired.get("trials") or {})
        if best is not None and best.reward is not None and self.accepted is not None:
            value = objective_value(self.accepted.objective, best.reward)
            if math.isfinite(value):
                m.best_reward.labels(*labels).set(value)
            if best.name != self.best_name:
                self.best_name = best.name
                self._event("Normal", "NewBestTrial", f"{best.name}: {self.accepted.objective.metric}={value:.6g}")

    async def _write_status(self, desired: Mapping[str, Any]) -> None:
        body = await self.runtime.api.patch(
            API_VERSION, "SearchExperiment", self.namespace, self.name, {"status": dict(desired)}, subresource="status"
        )
        self.observe_experiment(body)

    def _event(self, type_: str, reason: str, message: str) -> None:
        involved = {
            "apiVersion": API_VERSION,
            "kind": "SearchExperiment",
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
        }
        self.runtime.spawn(
            self.runtime.api.event(involved, reason, message, type_, instance=self.runtime.config.instance),
            f"event {reason} {self.name}",
        )


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A detached deep copy (kopf's bodies are views that change under our feet)."""
    return json.loads(json.dumps({key: body[key] for key in body}, default=str))


def _owned_by(body: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (body.get("metadata") or {}).get("ownerReferences") or [])


def _terminal_reason(body: Mapping[str, Any]) -> str:
    st = body.get("status") or {}
    for c in st.get("conditions") or []:
        if c.get("type") == st.get("phase") and c.get("status") == "True":
            return c.get("reason") or st.get("phase", "")
    return st.get("phase", "")

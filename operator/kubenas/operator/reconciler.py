"""One experiment's reconciler: reads the cached objects, asks the engine, applies its decision.

Each experiment has one reconciler with one task. Watch events (Trial, Job, Pod, EndpointSlice and
the experiment itself) only *wake* it; events that arrive during a pass coalesce into one more pass.
A pass is idempotent: it can stop at any point (crash, restart) and the next pass, in this process
or a new one, continues from the objects. Everything it creates has a deterministic name, so a
repeated create is an ``AlreadyExists``, never a duplicate.

A pass, in order:

1. the accepted spec (the Secret holds it and the controller's token) and the controller's objects;
2. the controller, reached at its pod IP; if it restarted, the trial history is replayed into it;
3. finished trials are told to the controller, and what it recorded (reward, tell position) is
   written to the Trial before anything else is asked, so a replay always sees what it saw;
4. ``decide()``; Ask(k) → k candidates → k Trials and Jobs; Finish → stop, settle the status.

The cache (kopf indexes) lags behind the operator's own writes by one watch event, so the objects
this process wrote are overlaid on it until the watch catches up (newer resourceVersion wins).
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
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from pydantic import ValidationError

from kubenas.api.v1alpha1 import API_VERSION, SearchExperimentSpec
from kubenas.controller.protocol import State
from kubenas.core.engine import Ask, Finish, Wait, decide, summarize
from kubenas.core.errors import KubenasError, SpecError
from kubenas.core.records import TrialRecord, objective_value, trial_seed
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
from kubenas.operator.spec_changes import describe_budget_change, judge_edit
from kubenas.operator.status_writer import StatusWriter
from kubenas.operator.views import JobView, PodView, TrialView, parse_time, resource_version

log = logging.getLogger("kubenas.operator")
#: the sort key of trials: their ask order (a C-level getter: the history is sorted on every pass)
BY_INDEX = attrgetter("index")


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


#: results told but not stored yet, and the result writes under way (see ``_results_written``)
ToldSoFar = tuple[frozenset[str], list[asyncio.Task[None]]]


def _now() -> datetime:
    return datetime.now(UTC)


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
        self.written: dict[str, TrialView] = {}
        self.placeholders: dict[str, TrialView] = {}  # asked, Trial not created yet
        #: told, result write under way: how the Trial will read, and the write
        self.result_writes: dict[str, tuple[TrialView, asyncio.Task[None]]] = {}
        self.unrecorded: set[str] = set()  # told, result not stored on the Trial yet (nothing may be created)
        self.creating: dict[str, asyncio.Task[None]] = {}
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
        for task in [*self.creating.values(), *(task for _, task in self.result_writes.values())]:
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
        trials = self._trials()
        endpoint = self._endpoint()
        if endpoint is None:
            if time.monotonic() - (self.children_at or 0.0) > 30.0:
                await self._ensure_controller()  # deleted by hand? create it again
            self.controller_ready = (False, "ControllerStarting", "waiting for the controller pod to be ready")
            self._publish(
                trials,
                status.Verdict(self._running_phase(trials), "ControllerStarting", "waiting for the controller pod"),
            )
            self.wake_later(30.0)  # re-check the controller's objects if nothing else wakes us
            return
        client = ControllerClient(
            self.runtime.http,
            endpoint,
            observer=lambda path, s: self.runtime.metrics.controller_calls.labels(path).observe(s),
        )
        trials = await self._sync(client, trials)
        trials = await self._record_outcomes(client, trials)
        records = [t.record() for t in trials]
        action = decide(self.accepted, records, self._elapsed())
        if isinstance(action, Finish):
            await self._finish(action)
            return
        if isinstance(action, Ask):
            _, trials = await asyncio.gather(
                self._mark_running(trials), self._start_trials(client, trials, action.count)
            )
        else:
            await self._mark_running(trials)
            self._arm_deadline()
        message = action.reason if isinstance(action, Wait) else f"{sum(1 for t in trials if not t.done)} trials active"
        self._publish(trials, status.Verdict(self._running_phase(trials), "Running", message))

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

    # -- the trials as known now -------------------------------------------------------------
    def _trials(self) -> list[TrialView]:
        """The cache's Trials overlaid with this process's newer writes, in ask order."""
        indexes = self.runtime.indexes
        assert indexes is not None
        merged: dict[str, TrialView] = {}
        for view in indexes.trials_of(self.namespace, self.name):
            if view.owner_uid == self.uid:
                merged[view.name] = view
        for name, mine in list(self.written.items()):
            cached = merged.get(name)
            if cached is not None and cached.resource_version >= mine.resource_version:
                del self.written[name]  # the watch caught up
            else:
                merged[name] = mine
        for name, (told, _) in self.result_writes.items():
            merged[name] = told
        for name, placeholder in self.placeholders.items():
            merged.setdefault(name, placeholder)
        return sorted(merged.values(), key=BY_INDEX)

    def _remember(self, body: Mapping[str, Any]) -> TrialView:
        view = TrialView.parse(body)
        self.written[view.name] = view
        return view

    # -- 2. the controller ---------------------------------------------------------------------
    async def _sync(self, client: ControllerClient, trials: list[TrialView]) -> list[TrialView]:
        """Make sure the controller holds exactly this history; replay it if it restarted."""
        if self.synced is not None and self.synced[0] == client.endpoint:
            return trials
        assert self.accepted is not None
        state = await client.health()
        told = sum(1 for t in trials if t.tell_sequence is not None)
        if state.configured and state.asked >= len(trials) and state.told >= told:
            # Same controller as before an operator restart, possibly a step ahead (a candidate asked
            # or a result told just before the crash): create the missing Trials now, before any tell
            # records an asksBeforeTell that counts them. Extra tells are repeated idempotently later.
            if state.asked > len(trials):
                trials = await self._start_trials(client, trials, state.asked - len(trials), state)
            self.log.info("controller adopted", extra={"asked": state.asked, "told": state.told})
        else:
            started = time.perf_counter()
            spec = self.accepted.to_wire()
            step = recovery_step([t.record() for t in trials])
            while step is not None:  # both processes were lost while Trials were being written
                self.log.warning("history has unwritten candidates", extra={"from": step.index, "count": step.count})
                await client.replay(self.name, spec, step.prefix)
                trials = await self._start_trials(client, trials, step.count, State("", True, 0, 0), step.index)
                step = recovery_step([t.record() for t in trials])
            state = await client.replay(self.name, spec, [t.record() for t in trials])
            self.runtime.metrics.controller_replays.labels(self.namespace, self.name).inc()
            seconds = round(time.perf_counter() - started, 4)
            self.log.info("controller replayed", extra={"trials": len(trials), "told": told, "seconds": seconds})
            if trials:
                self._event(
                    "Normal",
                    "ControllerReplayed",
                    f"replayed {len(trials)} trials ({told} results) into the controller in {seconds}s",
                )
        self.synced = (client.endpoint, state.instance)
        self.controller_ready = (True, "Ready", f"controller at {client.endpoint.url}, {state.asked} candidates asked")
        return trials

    def _check(self, state: State) -> None:
        if self.synced is None or state.instance != self.synced[1]:
            raise ControllerOutOfSync("the controller restarted")

    # -- 3. finished trials ------------------------------------------------------------------
    async def _record_outcomes(self, client: ControllerClient, trials: list[TrialView]) -> list[TrialView]:
        """Tell every finished trial, then record what the controller answered on the Trials."""
        indexes = self.runtime.indexes
        assert indexes is not None and self.accepted is not None
        finished: list[tuple[TrialView, outcomes.TrialOutcome, int]] = []
        for trial in trials:
            if trial.done or not trial.uid:  # finished, or its Trial is still being created
                continue
            # Jobs are owned by the experiment (by their Trial when an earlier version made them)
            jobs = [j for j in indexes.job_of(self.namespace, trial.name) if j.owner_uid in (self.uid, trial.uid)]
            pods = [p for p in indexes.pods_of(self.namespace, trial.name) if not jobs or p.owner_uid == jobs[0].uid]
            if not jobs and trial.name not in self.jobs_created:
                await self._create_job(trial)
                continue
            outcome = outcomes.trial_outcome(pods, jobs[0] if jobs else None, self.accepted.trial_template.retries)
            if outcome is None and jobs and jobs[0].complete:
                outcome = await self._confirm_lost_result(trial, jobs[0])
            if outcome is not None:
                finished.append((trial, outcome, outcomes.attempts(pods)))
        if not finished:
            return trials
        finished.sort(key=lambda f: (f[1].finished or "", f[0].index))
        told: list[tuple[TrialView, outcomes.TrialOutcome, int, dict[str, Any]]] = []
        for trial, outcome, attempts in finished:
            record, state = await client.tell(
                trial.index, trial.name, None if outcome.failed else outcome.metrics, outcome.failed, outcome.reason
            )
            self._check(state)
            told.append((trial, outcome, attempts, record))
        now = _now()
        by_name = {}
        for trial, outcome, attempts, record in told:
            final = status.trial_final_status(record, outcome, attempts, now)
            by_name[trial.name] = trial.with_status(final)
            self.unrecorded.add(trial.name)
            task = asyncio.get_running_loop().create_task(
                self._write_result(trial, outcome, final), name=f"result {trial.name}"
            )
            self.result_writes[trial.name] = (by_name[trial.name], task)
            if outcome.pod_uid and outcome.pod_uid in self.terminated_at:
                self.turnarounds.append(self.terminated_at.pop(outcome.pod_uid))
        return [by_name.get(t.name, t) for t in trials]

    async def _confirm_lost_result(self, trial: TrialView, job: JobView) -> outcomes.TrialOutcome | None:
        """A Job completed without a pod result in the cache: read the pods from the API server to be sure."""
        bodies = await self.runtime.api.list("v1", "Pod", self.namespace, {names.LABEL_TRIAL: trial.name})
        pods = [PodView.parse(b) for b in bodies]
        return outcomes.trial_outcome(pods, job, self.accepted.trial_template.retries if self.accepted else 0, True)

    async def _write_result(self, trial: TrialView, outcome: outcomes.TrialOutcome, final: Mapping[str, Any]) -> None:
        """Record a told result on its Trial. Runs beside the pass: the next candidate may be asked
        meanwhile, but its Trial and Job are created only after this write (see ``_results_written``)."""
        try:
            body = await self.runtime.api.patch(
                API_VERSION, "Trial", self.namespace, trial.name, {"status": dict(final)}, subresource="status"
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the trial reads unfinished again: the next pass tells it again (idempotent)
            self.runtime.metrics.reconcile_errors.labels(self.namespace, self.name).inc()
            self.log.warning("trial result not written", extra={"trial": trial.name, "error": repr(exc)})
            self.wake_later(1.0)
            return
        finally:
            self.result_writes.pop(trial.name, None)
        self.unrecorded.discard(trial.name)
        self._observe_finished(self._remember(body), outcome)

    def _told_so_far(self) -> ToldSoFar:
        """The results told but not stored yet, and the writes under way: what a candidate asked now waits for."""
        return frozenset(self.unrecorded), [task for _, task in self.result_writes.values()]

    async def _results_written(self, told: ToldSoFar | None = None) -> None:
        """Wait until the results told before a candidate was asked are stored; fail if one could not be.

        This is what keeps replay exact: a candidate asked after a tell becomes a Trial (or a Job)
        only once that tell's position is stored on the told Trial. Results told later do not hold
        it up.
        """
        required, writes = told or self._told_so_far()
        if writes:
            await asyncio.gather(*writes, return_exceptions=True)
        missing = required & self.unrecorded
        if missing:
            raise Requeue(f"results not stored yet: {', '.join(sorted(missing))}", 1.0)

    def _observe_finished(self, view: TrialView, outcome: outcomes.TrialOutcome) -> None:
        assert self.accepted is not None and self.runtime.indexes is not None
        m, labels = self.runtime.metrics, (self.namespace, self.name)
        start, end = parse_time(outcome.started), parse_time(outcome.finished)
        if start and end:
            m.trial_duration.labels(*labels).observe(max(0.0, (end - start).total_seconds()))
        gpus = manifests.gpus_of(self.accepted.trial_template.resources)
        if gpus:
            held = sum(
                p.terminated.seconds() for p in self.runtime.indexes.pods_of(self.namespace, view.name) if p.terminated
            )
            m.gpu_seconds.labels(*labels).inc(gpus * held)
        extra = {"trial": view.name, "phase": view.phase, "reward": view.reward, "reason": view.reason}
        self.log.info("trial finished", extra=extra)
        if view.phase in ("Failed", "Infeasible"):
            self._event(
                "Warning",
                "TrialFailed" if view.phase == "Failed" else "TrialInfeasible",
                f"{view.name}: {view.reason or view.phase}: {outcome.message or ''}".rstrip(": "),
            )

    # -- 4. new trials -------------------------------------------------------------------------
    async def _start_trials(
        self,
        client: ControllerClient,
        trials: list[TrialView],
        count: int,
        expect: State | None = None,
        index: int | None = None,
    ) -> list[TrialView]:
        """Ask for ``count`` candidates after the known ones; their Trials and Jobs are created in the background.

        The pass does not wait for the creations: it returns the candidates as placeholders (Pending, no
        uid yet), so the next pass counts them as active and never asks twice, and a trial that ends
        meanwhile is told without waiting for these writes. With ``expect`` (candidates found missing
        by a sync, from ``index`` on) the creations are awaited, so they exist before anything is told.
        """
        candidates, state = await client.ask(len(trials) if index is None else index, count)
        if expect is None:
            self._check(state)
        placeholders = [self._begin_creation(c) for c in candidates]
        if expect is not None:
            await self.creations_done()
            return self._trials()
        return sorted([*trials, *placeholders], key=BY_INDEX)

    def _begin_creation(self, candidate: Mapping[str, Any]) -> TrialView:
        assert self.accepted is not None
        index = int(candidate["index"])
        view = TrialView(
            name=names.trial_name(self.name, index),
            uid="",
            owner_uid=self.uid,
            resource_version=-1,
            index=index,
            architecture=dict(candidate["architecture"]),
            architecture_id=candidate["architectureId"],
            seed=trial_seed(self.accepted.strategy.seed, index),
        )
        if view.name not in self.creating:
            self.placeholders[view.name] = view
            task = asyncio.get_running_loop().create_task(
                self._create(candidate, view, self._told_so_far()), name=f"create {view.name}"
            )
            self.creating[view.name] = task
        return view

    async def _create(self, candidate: Mapping[str, Any], view: TrialView, told: ToldSoFar) -> None:
        """Create a candidate's Trial and Job, side by side, once the results told before it are stored."""
        name = view.name
        try:
            await self._results_written(told)
            trial, job = await asyncio.gather(
                self._create_trial(candidate), self._create_job(view), return_exceptions=True
            )
            for outcome in (trial, job):
                if isinstance(outcome, BaseException):
                    raise outcome
            if isinstance(trial, TrialView) and trial.done and job is True:
                # Found finished (a pass that ran on an older copy): the Job just made is not needed.
                await self.runtime.api.delete("batch/v1", "Job", self.namespace, name)
        except asyncio.CancelledError:
            raise
        except Fatal as exc:
            self.fatal = exc
            self.wake()
        except Exception as exc:  # the next pass asks for this index again and gets the same candidate
            self.runtime.metrics.reconcile_errors.labels(self.namespace, self.name).inc()
            self.log.warning("trial creation failed", extra={"trial": name, "error": repr(exc)})
            self.wake_later(exc.delay if isinstance(exc, Requeue) else 1.0)
        finally:
            self.placeholders.pop(name, None)
            self.creating.pop(name, None)

    async def creations_done(self) -> None:
        """Wait for the Trial and Job creations under way."""
        while self.creating:
            await asyncio.gather(*list(self.creating.values()), return_exceptions=True)

    async def _create_trial(self, candidate: Mapping[str, Any]) -> TrialView:
        assert self.accepted is not None
        index = int(candidate["index"])
        obj = manifests.trial_object(
            self.ref, self.accepted, index, candidate["architecture"], candidate["architectureId"]
        )
        try:
            body = await self.runtime.api.create(obj)
        except AlreadyExists:
            body = await self.runtime.api.get(API_VERSION, "Trial", self.namespace, obj["metadata"]["name"])
            if not _owned_by(body, self.uid):
                raise Requeue(f"an older experiment's Trial {obj['metadata']['name']} is still being deleted") from None
            if (body.get("spec") or {}).get("architectureId") != candidate["architectureId"]:
                raise Fatal(
                    "HistoryConflict", f"Trial {obj['metadata']['name']} exists with another architecture"
                ) from None
        return self._remember(body)

    async def _create_job(self, trial: TrialView) -> bool:
        """Create the trial's Job (owned by the experiment, so it needs no Trial uid); True if it was new."""
        assert self.accepted is not None
        trial_body = {
            "metadata": {"name": trial.name},
            "spec": {
                "architecture": dict(trial.architecture),
                "architectureId": trial.architecture_id,
                "seed": trial.seed,
            },
        }
        self.jobs_created.add(trial.name)  # before the write: a pass meanwhile must not create it too
        try:
            await self.runtime.api.create(manifests.trainer_job(self.ref, self.accepted, trial_body))
        except AlreadyExists:
            job = await self.runtime.api.get("batch/v1", "Job", self.namespace, trial.name)
            if not (_owned_by(job, self.uid) or (trial.uid and _owned_by(job, trial.uid))):
                self.jobs_created.discard(trial.name)
                raise Requeue(f"an older Job {trial.name} is still being deleted") from None
            return False
        except BaseException:
            self.jobs_created.discard(trial.name)
            raise
        if self.turnarounds:
            elapsed = time.monotonic() - self.turnarounds.popleft()
            self.runtime.metrics.trial_turnaround.labels(self.namespace, self.name).observe(elapsed)
        return True

    async def _mark_running(self, trials: Sequence[TrialView]) -> None:
        """Pending trials whose pod runs become Running (and retried ones count their attempts)."""
        indexes = self.runtime.indexes
        assert indexes is not None
        writes = []
        for trial in trials:
            if trial.done or not trial.uid:
                continue
            pods = indexes.pods_of(self.namespace, trial.name)
            if not outcomes.is_running(pods):
                continue
            attempts = outcomes.attempts(pods)
            if trial.phase == "Running" and trial.attempts == attempts:
                continue
            patch = {"status": status.trial_running_status(attempts, outcomes.started_at(pods))}
            writes.append(
                self.runtime.api.patch(API_VERSION, "Trial", self.namespace, trial.name, patch, subresource="status")
            )
        for body in await asyncio.gather(*writes):
            self._remember(body)

    # -- the end -------------------------------------------------------------------------------
    async def _finish(self, action: Finish) -> None:
        await self._results_written()
        await self.creations_done()
        active = [t for t in self._trials() if not t.done]
        for trial in active:  # a goal reached or too many failures: the rest is not needed
            await self.runtime.api.delete("batch/v1", "Job", self.namespace, trial.name)
            body = await self.runtime.api.patch(
                API_VERSION,
                "Trial",
                self.namespace,
                trial.name,
                {
                    "status": {
                        "phase": "Failed",
                        "reason": "Cancelled",
                        "message": f"the experiment finished: {action.reason}",
                    }
                },
                subresource="status",
            )
            self._remember(body)
        self.turnarounds.clear()
        verdict = status.Verdict(action.phase, action.reason, action.message)
        self.final = verdict
        self.log.info(
            "experiment finished",
            extra={"phase": action.phase, "reason": action.reason, "detail": action.message, "cancelled": len(active)},
        )
        self._event("Normal" if action.phase == "Succeeded" else "Warning", action.reason, action.message)
        await self._scale_controller_down()
        self._publish(self._trials(), verdict, urgent=True)

    async def _fail(self, exc: Fatal | ControllerRefused) -> None:
        reason = exc.reason if isinstance(exc, Fatal) else exc.code
        message = exc.message
        self.log.error("experiment failed", extra={"reason": reason, "detail": message})
        self._event("Warning", reason, message)
        self.final = status.Verdict("Failed", reason, message)
        trials = self._trials() if self.runtime.indexes is not None else []
        if self.accepted is None:
            self._publish_invalid(reason, message)
            return
        await self._scale_controller_down()
        self._publish(trials, status.Verdict("Failed", reason, message), urgent=True)

    async def _settle_finished(self) -> None:
        """A finished experiment keeps its status current (spec edits) and holds no controller pod."""
        await self._scale_controller_down()
        verdict = self.final or status.Verdict(
            self.phase, _terminal_reason(self.body), (self.body.get("status") or {}).get("message") or ""
        )
        if self.accepted is None:
            self._publish_invalid(verdict.reason, verdict.message)
        else:
            self._publish(self._trials(), verdict)

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
    def _running_phase(self, trials: Sequence[TrialView]) -> str:
        return "Running" if trials else "Pending"

    def _elapsed(self) -> float | None:
        started = parse_time((self.body.get("status") or {}).get("startTime"))
        return (_now() - started).total_seconds() if started else 0.0

    def _arm_deadline(self) -> None:
        assert self.accepted is not None
        limit = self.accepted.budget.max_duration_seconds()
        elapsed = self._elapsed()
        if limit is not None and elapsed is not None and elapsed < limit:
            self.wake_later(limit - elapsed + 0.05)

    def _publish(self, trials: Sequence[TrialView], verdict: status.Verdict, urgent: bool = False) -> None:
        assert self.accepted is not None
        records = [t.record() for t in trials]
        summary = summarize(self.accepted, records)
        current = self.body.get("status") or {}
        desired = status.experiment_status(
            current=current,
            spec=self.accepted,
            trials=records,
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

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
3. events: results stored since the last pass, the epochs trainers reported through the controller
   (:mod:`kubenas.operator.progress_feed`), and the pods and Jobs of the active trials only;
4. the driver's commands: asks and tells to the controller in order, creations and result writes in
   the background (the driver holds a creation back until the results told before it are stored,
   which keeps replay exact), the Jobs of pruned trials ended; then the curves of running trials
   and the status.

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
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from kubenas.api.v1alpha1 import API_VERSION, SearchExperimentSpec
from kubenas.controller.protocol import State
from kubenas.core import retrain
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
    Progress,
    Proposed,
    Prune,
    ResultStored,
    Store,
    Tell,
    Tick,
)
from kubenas.core.engine import summarize
from kubenas.core.errors import SpecError
from kubenas.core.records import TrialRecord, objective_value, trial_name, trial_seed
from kubenas.core.spec_changes import SpecVerdict, describe_budget_change, judge_edit
from kubenas.load import problems_of
from kubenas.operator import manifests, names, outcomes, status
from kubenas.operator.controller_client import (
    ControllerClient,
    ControllerOutOfSync,
    ControllerRefused,
    ControllerUnavailable,
    Endpoint,
)
from kubenas.operator.failures import PERMANENT_STATUSES, ExperimentLog, Fatal, Requeue, owned_by
from kubenas.operator.grace import Gate, missing
from kubenas.operator.kube import KUEUE_API_VERSION, AlreadyExists, ApiError, NotFound
from kubenas.operator.oneshot import OneShotPhases
from kubenas.operator.progress_feed import ProgressFeed
from kubenas.operator.recovery import recovery_step
from kubenas.operator.runtime import Runtime
from kubenas.operator.sources import read_init_source, read_source
from kubenas.operator.startup import StartCheck
from kubenas.operator.status_writer import StatusWriter
from kubenas.operator.trial_writes import TrialWriter
from kubenas.operator.views import JobView, PodView, parse_time, resource_version

log = logging.getLogger("kubenas.operator")


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
        self.driver: Driver | None = None  # rebuilt from the Trials on the first pass that reaches the controller
        self.oneshot: OneShotPhases | None = None  # a one-shot search's phases 1 and 2 (phase 3 is ordinary)
        self.fatal: Fatal | None = None
        self._pod_checks: dict[str, Gate] = {}  # Job uid -> when to read its FailedCreate events
        self._queue_check = Gate(self.wake_later)  # when to look spec.queueName's LocalQueue up
        self.start_check = StartCheck(runtime.api, self.namespace, self.log, self.wake_later)
        self.refusal_reported: int | None = None
        self.controller_ready: tuple[bool, str, str] = (False, "ControllerStarting", "creating the controller")
        self.spec_verdict = status.SpecVerdict(True)
        self.final: status.Verdict | None = None  # set once the search is over, before the status says so
        self.scaled_down = False
        self.waiting_trials = 0  # active trials whose Job Kueue holds suspended (spec.queueName)
        self.requeued_trials = 0  # of those, trials that had started: preempted, waiting for re-admission
        self.best_name: str | None = ((self.body.get("status") or {}).get("bestTrial") or {}).get("name")
        self.status_writer = StatusWriter(self._write_status, runtime.config.status_interval_s, self.log)
        self.writes = TrialWriter(
            runtime, self.ref, self.log, lambda: self.accepted, self.wake, self.wake_later, self._fatal, self._event
        )
        self.controller_at: Endpoint | None = None  # the controller pod last reached
        self.writes.channel = self._channel
        self.feed = ProgressFeed(lambda: runtime.http, self.wake, self.log)
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
        """Reconcile again after ``delay`` seconds (a retry or a deadline), unless woken sooner: a
        pending wake-up that comes earlier is kept (a retry is not pushed back by a later deadline)."""
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            if loop.time() < self._timer.when() <= loop.time() + delay and not self._timer.cancelled():
                return
            self._timer.cancel()
        self._timer = loop.call_later(delay, self._wake.set)

    async def stop(self) -> None:
        self.stopped = True
        if self._timer is not None:
            self._timer.cancel()
        self.writes.cancel_all()
        await self.feed.stop()
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
        self.writes.note_termination(pod_uid)

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
        if self.accepted.one_shot is not None and self.oneshot is None:
            self.oneshot = OneShotPhases(
                self.runtime,
                self.ref,
                self.accepted,
                self.log,
                lambda: self.body.get("status") or {},
                self._write_status,
                self._event,
                self.wake,
                self.wake_later,
                self.start_check,
            )
        self._judge_edit(spec)
        if self.final is not None or self.phase in status.TERMINAL_PHASES:
            await self._settle_finished()
            return
        if self.children_at is None:
            await self._ensure_controller()
        if self.oneshot is not None and not await self._one_shot_phase():
            return  # phase 1 or 2 ran this pass
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
        self.controller_at = client.endpoint
        driver = self.driver
        if driver is None or self.synced is None or self.synced[0] != client.endpoint:
            driver = await self._sync(client)
        if driver.spec is not self.accepted:
            driver.respec(self.accepted)
        self.feed.follow(client.endpoint)
        self.writes.retry_failed()
        stored = list(self.writes.stored)  # results stored since the last pass
        observed = await self._observe(driver)
        progress = self._progress(driver)  # before the pods: a trial's last epochs, then its end
        curves = {e.index: len(driver.trial(e.index).curve) for e in progress}
        events = [Tick(self._elapsed() or 0.0), *(ResultStored(i) for i in stored), *progress, *observed]
        commands = driver.handle(*events)
        del self.writes.stored[: len(stored)]  # consumed only now: a pass that fails before tells them again
        await self._carry_out(client, driver, commands)
        for index, before in curves.items():
            rec = driver.trial(index)
            if rec.active and len(rec.curve) > before:
                self.writes.write_curve(rec)
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
            path, message = problems_of(exc)[0]  # kubenas validate's path and words
            raise Fatal("InvalidSpec", f"spec.{path}: {message}" if path != "<root>" else f"spec: {message}") from None
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
            spec = await self._resolve(spec)
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
        if not owned_by(secret, self.uid):
            raise Requeue("an older experiment's controller Secret is still being deleted")
        data = secret.get("data") or {}
        self.token = base64.b64decode(data.get(names.TOKEN_KEY, "")).decode()
        stored = data.get(names.SPEC_KEY)
        self.accepted = SearchExperimentSpec.model_validate(json.loads(base64.b64decode(stored))) if stored else spec

    async def _resolve(self, spec: SearchExperimentSpec) -> SearchExperimentSpec:
        """The spec to accept: a retrain's or seedFrom's architectures and initFrom's best trial read from
        their sources, once, before the Secret stores the spec (a restart then replays the same list).
        An unusable source fails the experiment."""
        try:
            spec = retrain.resolved(spec, await read_source(self.runtime.api, self.namespace, spec))
            init_run = await read_init_source(self.runtime.api, self.namespace, spec)
            return retrain.resolved_init(spec, init_run, weights_outlive_runs=True)  # on the artifact store
        except SpecError as exc:
            raise Fatal("SourceUnusable", str(exc)) from None

    def _judge_edit(self, spec: SearchExperimentSpec) -> None:
        assert self.accepted is not None
        generation = self.body["metadata"].get("generation")
        base = self.oneshot.spec if self.oneshot is not None else self.accepted  # what the Secret holds
        accepted, verdict = judge_edit(base, spec)
        over = self.final is not None or self.phase in status.TERMINAL_PHASES
        if verdict.accepted and accepted is not base and over:
            # the search is over and its controller gone: a larger budget would be shown and never used
            accepted, verdict = (
                base,
                SpecVerdict(
                    False,
                    "ExperimentFinished",
                    f"the search has finished ({self.phase}): a budget edit does not resume it; start a new"
                    " experiment from its results (strategy.seedFrom, trialTemplate.initFrom)",
                ),
            )
        self.spec_verdict = verdict
        if not verdict.accepted:
            if self.refusal_reported != generation and not self._refusal_on_record(verdict, generation):
                self.refusal_reported = generation
                self.log.warning("spec edit refused", extra={"reason": verdict.reason, "detail": verdict.message})
                self._event("Warning", "SpecChangeRefused", verdict.message)
            return
        if accepted is not base:
            change = describe_budget_change(base, accepted)
            self.runtime.spawn(self._store_accepted(accepted), f"store spec {self.name}")
            self.accepted = accepted if self.oneshot is None else self.oneshot.respec(accepted)
            self.log.info("budget changed", extra={"change": change})
            self._event("Normal", "BudgetChanged", change)

    def _refusal_on_record(self, verdict: SpecVerdict, generation: Any) -> bool:
        """Whether the status already reports this refusal of this generation: an operator that restarts
        (or takes over as leader) does not warn about the same edit again."""
        conditions = (self.body.get("status") or {}).get("conditions") or []
        held = next((c for c in conditions if c.get("type") == status.SPEC_ACCEPTED), None)
        return (
            held is not None
            and held.get("status") == "False"
            and held.get("reason") == verdict.reason
            and held.get("message") == verdict.message
            and held.get("observedGeneration") == generation
        )

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

    async def _one_shot_phase(self) -> bool:
        """A one-shot search's phases 1 and 2 are the executor's (:mod:`kubenas.operator.oneshot`); True
        once phase 3 runs, with the retrain of the top k as the spec of the ordinary pass that follows."""
        assert self.oneshot is not None
        endpoint = self._endpoint()
        client = None
        if endpoint is not None:
            client = ControllerClient(
                self.runtime.http,
                endpoint,
                observer=lambda path, s: self.runtime.metrics.controller_calls.labels(path).observe(s),
            )
            self.controller_ready = (True, "Ready", f"controller at {endpoint.url}")
        retrain_spec = await self.oneshot.run(client)
        if retrain_spec is None:
            self._publish(status.Verdict("Running", f"OneShot{self.oneshot.phase}", self.oneshot.message))
            return False
        if self.accepted is not retrain_spec and self.accepted.to_wire() != retrain_spec.to_wire():
            self.accepted, self.driver, self.synced = retrain_spec, None, None  # phase 3: rebuilt on its spec
        return True

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
                self.writes.trial_uids[view.name] = view.uid
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
            self.writes.end_pruned_jobs(records)
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
        # what the replay found, not a count that would go stale: status.trials keeps the counts current
        replayed = f"{state.asked} candidates asked when it was replayed" if trials else "nothing to replay"
        self.controller_ready = (True, "Ready", f"controller at {client.endpoint.url} ({replayed})")
        return self.driver

    async def _recreate(self, candidate: Candidate) -> TrialRecord:
        """A Trial found missing by recovery, written (with its Job) before anything is told."""
        assert self.accepted is not None
        record = TrialRecord(
            index=candidate.index,
            architecture=dict(candidate.architecture),
            name=trial_name(self.name, candidate.index),
            parents=candidate.parents,
        )
        create = Create(record, candidate.architecture_id, trial_seed(self.accepted.strategy.seed, candidate.index))
        await self.writes.create_now(create)
        return record

    def _fatal(self, exc: Fatal) -> None:
        """A background write found the experiment cannot go on: the next pass fails it."""
        self.fatal = exc
        self.wake()

    def _check(self, state: State) -> None:
        if self.synced is None or state.instance != self.synced[1]:
            raise ControllerOutOfSync("the controller restarted")

    # -- 3. what happened --------------------------------------------------------------------
    async def _observe(self, driver: Driver) -> list[Event]:
        """Events for the active trials, read from their pods and Jobs (O(active trials), not O(history))."""
        indexes = self.runtime.indexes
        assert indexes is not None
        events: list[Event] = []
        writes = self.writes
        self.waiting_trials = self.requeued_trials = 0
        started_or_waiting: list[PodView] = []  # the active trials' pods, for one claim check per pass
        for rec in driver.active_trials():
            name = rec.name
            if name in writes.creating or name not in writes.trial_uids:
                continue  # its Trial and Job are being written, or the driver holds its creation back
            owners = (self.uid, writes.trial_uids.get(name, self.uid))  # Jobs of an earlier version: the Trial's
            jobs = [j for j in indexes.job_of(self.namespace, name) if j.owner_uid in owners]
            if not jobs:
                if name in writes.jobs_seen:  # deleted under a running trial: as a restart would, create it again
                    writes.jobs_seen.discard(name)
                    writes.jobs_created.discard(name)
                    self.log.warning("trainer Job deleted", extra={"trial": name})
                    self._event("Warning", "TrialJobDeleted", f"the Job of {name} was deleted: created again")
                if name not in writes.jobs_created and rec.index not in writes.creates_to_retry:
                    writes.create_job_of(rec)
                continue
            writes.jobs_seen.add(name)
            pods = [p for p in indexes.pods_of(self.namespace, name) if p.owner_uid == jobs[0].uid]
            self.waiting_trials += jobs[0].suspended
            self.requeued_trials += jobs[0].suspended and rec.phase == "Running"
            if jobs[0].queued and not jobs[0].suspended:
                writes.note_admission(name)
            if not pods and not jobs[0].failed and not jobs[0].complete and not jobs[0].suspended:
                await self._check_pod_creation(jobs[0])
            if jobs[0].suspended and jobs[0].queued:
                await self._check_queue(jobs[0])
            started_or_waiting.extend(pods)
            seen = outcomes.events_of(rec.index, pods, jobs[0])
            if not outcomes.decided(seen) and jobs[0].complete:
                seen = await self._confirm_lost_result(rec, jobs[0])
            if outcomes.decided(seen):
                writes.started_at[name] = writes.started_at.get(name) or outcomes.started_at(pods)
                deciding = outcomes.deciding_pod(pods)
                writes.slot_freed(deciding.uid if deciding is not None else None)
                writes.admitted.discard(name)
            events.extend(seen)
        assert self.accepted is not None
        await self.start_check(self.accepted, started_or_waiting, _now())
        return events

    def _progress(self, driver: Driver) -> list[Progress]:
        """The epochs trainers posted since the last pass, for trials of this experiment the driver knows."""
        events: list[Progress] = []
        prefix = f"{self.name}-"
        for point in self.feed.drain():
            suffix = point.trial.removeprefix(prefix)
            if suffix == point.trial or not suffix.isdigit():
                continue
            index = int(suffix)
            if index < driver.asked and driver.trial_name(index) == point.trial:
                with contextlib.suppress(KeyError):  # asked, not proposed yet: it cannot have run
                    driver.trial(index)
                    events.append(Progress(index, point.step, point.metrics))
        return events

    def _channel(self) -> manifests.ProgressChannel | None:
        """The push channel new trainers get: the controller last reached, the token it checks."""
        if self.controller_at is None or self.token is None:
            return None
        return manifests.ProgressChannel.of(self.ref, (self.controller_at.host, self.controller_at.port), self.token)

    async def _check_pod_creation(self, job: JobView) -> None:
        """A Job that has made no pod for a while may be refused its pods for good (a PriorityClass,
        ServiceAccount or claim that does not exist, a pod the admission plugins forbid): the Job
        controller only says so in its events. Read them then, and fail the experiment rather than
        wait for ever; a refusal that can pass (quota used up) keeps the trial waiting."""
        created = parse_time(job.created)
        if created is None:
            return
        age = (_now() - created).total_seconds()
        if not self._pod_checks.setdefault(job.uid, Gate(self.wake_later)).due(age):
            return
        fields = {"involvedObject.kind": "Job", "involvedObject.name": job.name, "reason": "FailedCreate"}
        try:
            found = await self.runtime.api.list("v1", "Event", self.namespace, field_selector=fields)
        except ApiError as exc:  # without the right to read events the trial just waits, as it did before
            self.log.warning("cannot read the Job's events", extra={"job": job.name, "error": repr(exc)})
            return
        for event in found:
            message = event.get("message") or ""
            if ((event.get("involvedObject") or {}).get("uid") in (job.uid, None)) and _refused_for_good(message):
                raise Fatal("TrialPodRefused", f"the Job {job.name} cannot create its pod: {message}")

    async def _check_queue(self, job: JobView) -> None:
        """A Job held for a LocalQueue that does not exist (a typo in ``spec.queueName``, or no Kueue in
        the cluster) would wait for ever: Kueue never admits it and says so only on its Workload. Look the
        queue up once a Job has waited past the grace period, and fail the experiment if it is missing;
        a queue that exists but has no room keeps the trials waiting."""
        created = parse_time(job.created)
        queue = self.accepted.queue() if self.accepted is not None else None
        if created is None or queue is None:
            return
        age = (_now() - created).total_seconds()
        if not self._queue_check.due(age):
            return
        if await missing(self.runtime.api, KUEUE_API_VERSION, "LocalQueue", self.namespace, queue, self.log):
            raise Fatal(
                "QueueNotFound",
                f"spec.queueName: no LocalQueue {queue!r} in namespace {self.namespace} (is Kueue installed?);"
                f" the Job {job.name} has waited {age:.0f}s for it",
            )

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
                self.writes.create(command)
            elif isinstance(command, Store):
                self.writes.store(command)
            elif isinstance(command, MarkRunning):
                self.writes.mark_running(command)
            elif isinstance(command, Cancel):
                await self.writes.cancel(command.trial)
            elif isinstance(command, Prune):
                self.writes.prune(command.trial)  # its Job goes once the Store that follows has landed
            # Relaunch: the Job's backoff starts the next attempt; Finish: read by the pass from the driver
        if failure is not None:
            if not isinstance(failure, ControllerRefused):
                self.synced = None
            raise failure

    # -- the end -------------------------------------------------------------------------------
    async def _finish(self, action: Finish) -> None:
        await self.writes.done()
        self.writes.turnarounds.clear()
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
        await self.feed.stop()
        if self.oneshot is not None:
            await self.oneshot.stop_evaluator()
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
        gpu_wait = self.driver.seconds_to_deadline() if self.driver is not None else None
        if gpu_wait is not None and self.accepted.budget.max_gpu_hours is not None:
            self.wake_later(gpu_wait + 0.05)  # when the running trials will have used up maxGpuHours

    def _publish(self, verdict: status.Verdict, urgent: bool = False) -> None:
        """Status, metrics and the best-trial event from the driver's summary (O(1): no pass over history)."""
        assert self.accepted is not None
        if self.driver is not None:
            summary = (self.driver.counts, self.driver.best)
        else:
            summary = summarize(self.accepted, self._records())
        current = self.body.get("status") or {}
        best = summary[1]
        driver = self.driver
        gpu_hours = driver.gpu_seconds_done / 3600 if driver is not None and driver.gpus else None
        desired = status.experiment_status(
            current=current,
            spec=self.accepted,
            verdict=verdict,
            controller_ready=self.controller_ready,
            spec_verdict=self.spec_verdict,
            generation=self.body["metadata"].get("generation"),
            now=_now(),
            summary=summary,
            best_artifacts=manifests.trial_artifacts(self.accepted, self.name, best.name) if best else None,
            waiting=self.waiting_trials,
            requeued=self.requeued_trials,
            front=driver.front if driver is not None else None,
            gpu_hours=gpu_hours,
            one_shot=self.oneshot.status_block() if self.oneshot is not None else None,
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
        if self.driver is not None and self.driver.gpus:
            m.gpu_used.labels(*labels).set(self.driver.gpu_seconds_used)
            if self.accepted is not None and self.accepted.budget.max_gpu_hours is not None:
                m.gpu_limit.labels(*labels).set(self.accepted.budget.max_gpu_hours * 3600)
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


def _terminal_reason(body: Mapping[str, Any]) -> str:
    st = body.get("status") or {}
    for c in st.get("conditions") or []:
        if c.get("type") == st.get("phase") and c.get("status") == "True":
            return c.get("reason") or st.get("phase", "")
    return st.get("phase", "")


def _refused_for_good(message: str) -> bool:
    """Whether a FailedCreate event says no retry will help: the pod is forbidden or refers to a missing
    object. An exceeded quota is forbidden too, but frees up as other pods end, so it keeps waiting."""
    text = message.lower()
    if "exceeded quota" in text:
        return False
    return "forbidden" in text or "not found" in text or "is invalid" in text

"""A one-shot search on Kubernetes: the executor of phases 1 and 2, and the switch to phase 3.

Which phase runs is the core's decision, :func:`kubenas.core.oneshot.next_phase`, over what is
recorded in the cluster, so a restarted operator continues where the record ends:

- **Supernet** (phase 1): the Job ``<exp>-supernet`` (:func:`oneshot_manifests.supernet_job`). Its pods
  are read into the driver's events like a trial's (:mod:`kubenas.operator.outcomes`; the Job's
  backoff does the retries) and judged by :func:`~kubenas.core.oneshot.supernet_outcome`. The verdict
  is written to ``status.oneShot.supernet`` before anything else happens: that is phase 1's record.
  A restarted operator finds the Job it created and reads its pods again.
- **Search** (phase 2): the ordinary :class:`~kubenas.core.driver.Driver` on
  :func:`~kubenas.core.oneshot.evaluation_spec`, the strategy in the controller pod (replayed with the
  evaluation history, as for Trials), each candidate scored by one of the evaluator pods
  (``<exp>-evaluator``, ``oneShot.evaluators`` of them, each with the supernet loaded once; the
  candidates proposed at one time are scored side by side, see :func:`score`). The light record is
  a chain of ConfigMaps (``<exp>-evaluations-<k>``), written once per pass for the evaluations told
  in it, never a Trial each. Written in order, it is always a prefix of the told evaluations, which
  replays exactly: an operator killed before a write scores the unwritten candidates again, and the
  strategy, rebuilt by replay, proposes the same ones (with several evaluators, the candidates it
  had asked beyond the record are asked again: :func:`kubenas.core.history.replay`).
- **Retrain** (phase 3): :func:`~kubenas.core.oneshot.retrain_spec`, a retrain of the top k of the
  record, handed back to the reconciler, which runs it as ordinary Trials and Jobs. It is computed
  again from the record after a restart (a pure function of it), so it needs no store of its own.

The experiment's ``status.oneShot`` follows the phases (phase, the supernet's record, evaluation
counts, the best one-shot score and the top k), with a ``PhaseStarted`` event as each phase begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.driver import (
    AskFor,
    AttemptEnded,
    AttemptStarted,
    Command,
    Create,
    Driver,
    Proposed,
    Relaunch,
    ResultStored,
    Store,
    Tell,
    Tick,
    TrialLost,
)
from kubenas.core.oneshot import (
    RETRAIN,
    SEARCH,
    SUPERNET,
    Evaluate,
    OneShotFailed,
    Retrain,
    SupernetRecord,
    TrainSupernet,
    next_phase,
    supernet_outcome,
)
from kubenas.core.records import TrialRecord
from kubenas.core.retrain import top_architectures
from kubenas.insights.collapse import operation_mix
from kubenas.operator import names, oneshot_manifests, outcomes
from kubenas.operator.controller_client import ControllerClient, ControllerOutOfSync, Endpoint
from kubenas.operator.failures import ExperimentLog, Fatal, Requeue, owned_by
from kubenas.operator.kube import AlreadyExists, NotFound
from kubenas.operator.manifests import ExperimentRef, ProgressChannel
from kubenas.operator.runtime import Runtime
from kubenas.operator.startup import StartCheck
from kubenas.operator.views import PodView

#: failed starts of the evaluator's container (its evaluate command could not load the supernet, and
#: the front exited) after which the experiment fails (EvaluatorFailed) instead of waiting for it
EVALUATOR_FAILURES = 3
#: how often the evaluator's pods are read while it is not ready (its pods are not watched)
EVALUATOR_CHECK_S = 5.0
#: how much of the evaluator's termination message (its log's tail) the condition quotes
QUOTED_CHARS = 600

#: how long, and how many candidates, one pass scores before it writes the record and yields (another
#: pass follows): at most that much scoring is done again after a kill
PASS_SECONDS = 5.0
PASS_EVALUATIONS = 20


def supernet_from_status(block: Mapping[str, Any] | None) -> SupernetRecord:
    """Phase 1's record as ``status.oneShot.supernet`` holds it (nothing recorded: no attempt yet)."""
    data = (block or {}).get("supernet") or {}
    return SupernetRecord(
        attempts=int(data.get("attempts") or 0),
        succeeded=bool(data.get("succeeded")),
        failed=bool(data.get("failed")),
        metrics=dict(data.get("metrics") or {}),
        reason=data.get("reason"),
        message=data.get("message"),
    )


def supernet_wire(record: SupernetRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attempts": record.attempts,
        "succeeded": record.succeeded,
        "failed": record.failed,
        "metrics": dict(record.metrics),
    }
    if record.reason:
        out["reason"] = record.reason
    if record.message:
        out["message"] = record.message[:1000]
    return out


def supernet_events_record(record: SupernetRecord, events: list[Any], pods: int, retries: int) -> SupernetRecord:
    """The supernet's record after what its pods and Job say (``outcomes.events_of``): the trial rule
    for an ended attempt, the Job's verdict when it gave up, else the attempts seen so far."""
    for event in events:
        if isinstance(event, AttemptEnded):
            return supernet_outcome(record, event.attempt, event.exit_code, event.result, retries)
        if isinstance(event, TrialLost):
            attempts = event.attempts if event.attempts is not None else pods
            return SupernetRecord(attempts, False, True, {}, event.reason, event.message)
    return SupernetRecord(max(record.attempts, pods), False, False, {}, record.reason, record.message)


def evaluations_wire(spec: SearchExperimentSpec, evaluations: list[TrialRecord]) -> dict[str, Any]:
    """Phase 2's part of ``status.oneShot``: counts, the best score, the top k and the collapse guard."""
    assert spec.one_shot is not None
    told = [e for e in evaluations if e.told]
    top = top_architectures(told, spec.objective, spec.one_shot.top_k)
    out: dict[str, Any] = {
        "evaluations": {
            "told": len(told),
            "succeeded": sum(1 for e in told if e.phase == "Succeeded"),
            "failed": sum(1 for e in told if e.phase != "Succeeded"),
            "target": spec.one_shot.evaluations,
        },
        "top": [{"evaluation": c.trial, "architecture": dict(c.architecture), "score": c.value} for c in top],
    }
    if top:
        out["bestScore"] = top[0].value
        operations = [*(spec.search_space.cell.operations if spec.search_space.cell else [])]
        operations += [o for o in (spec.search_space.layers.operations if spec.search_space.layers else [])]
        out["parameterFree"] = operation_mix([c.architecture for c in top], operations)["parameter_free"]
    return out


def evaluator_failure(pods: Iterable[Mapping[str, Any]], failures: int = EVALUATOR_FAILURES) -> str | None:
    """Why the evaluator cannot start, once its container has failed ``failures`` times (its restarts,
    and the last failure while it is not running again; the last exit not 0), quoting its termination
    message (the tail of its log: the evaluate command's error); None while it may still come up."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != names.COMPONENT_EVALUATOR:
                continue
            state = cs.get("state") or {}
            last = state.get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if not last or last.get("exitCode") in (0, None):
                continue
            # restarts made, and the failure not restarted yet (ended, or waiting in CrashLoopBackOff)
            failed = int(cs.get("restartCount") or 0) + (0 if "running" in state else 1)
            if failed < failures:
                continue
            name = (pod.get("metadata") or {}).get("name", "")
            message = (last.get("message") or last.get("reason") or "").strip()
            if len(message) > QUOTED_CHARS:
                message = "..." + message[-QUOTED_CHARS:]
            return (
                f"the evaluator pod {name} failed {failed} times before it loaded the supernet "
                f"(exit code {last.get('exitCode')}): {message or 'no message'}"
            )
    return None


async def score(evaluators: Sequence[ControllerClient], commands: Sequence[Create | Relaunch]) -> list[dict[str, Any]]:
    """Each command's candidate scored by one of ``evaluators``, side by side, an evaluator taking the
    next candidate as soon as it has answered (an evaluator pod scores one at a time); the answers in
    the commands' order.

    Why in order: the driver then hears the results in the order it would hear them one by one, so
    its decisions, and the strategy's, are the same however the scoring was spread (local mode scores
    one by one) and whichever pod was quicker."""
    answers: list[dict[str, Any]] = [{} for _ in commands]
    queue = iter(range(len(commands)))  # shared by the lanes: each takes the next index

    async def lane(evaluator: ControllerClient) -> None:
        for i in queue:
            rec = commands[i].trial
            answers[i] = await evaluator.evaluate(rec.index, rec.architecture)

    tasks = [asyncio.ensure_future(lane(e)) for e in evaluators[: len(commands)]]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:  # one lane failed: the others stop too (the pass is retried from the record)
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # settled, so no failure goes unretrieved
    return answers


class OneShotPhases:
    """One one-shot experiment's phases 1 and 2, carried out pass by pass (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        ref: ExperimentRef,
        spec: SearchExperimentSpec,
        log: ExperimentLog,
        current_status: Callable[[], Mapping[str, Any]],
        write_status: Callable[[Mapping[str, Any]], Awaitable[None]],
        event: Callable[[str, str, str], None],
        wake: Callable[[], None],
        wake_later: Callable[[float], None] | None = None,
        start_check: StartCheck | None = None,
    ) -> None:
        self.runtime = runtime
        self.ref = ref
        self.spec = spec
        self.log = log
        self.current_status = current_status
        self.write_status = write_status
        self.event = event
        self.wake = wake
        self.wake_later = wake_later
        self.start_check = start_check  # the experiment's: a missing claim fails it (supernet and evaluator pods)
        self.evaluator_checked = 0.0  # when the evaluator's pods were last read (while it was not ready)
        block = current_status().get("oneShot") or {}
        self.announced: str | None = block.get("phase")
        self.supernet: SupernetRecord | None = None  # read from the status on the first pass
        self.evaluations: list[TrialRecord] | None = None  # read from the ConfigMaps on the first pass
        self.chunks: set[int] = set()
        self.message = ""
        # phase 2, kept across passes (dropped on any failure: rebuilt from the record)
        self.driver: Driver | None = None
        self.pending: deque[Command] = deque()
        self.unwritten: list[TrialRecord] = []
        self.synced: tuple[Endpoint, str] | None = None
        self.evaluator_created = False
        self.evaluator_stopped = False
        self._wire: tuple[int, dict[str, Any]] | None = None
        self._retrain: SearchExperimentSpec | None = None  # phase 3's spec, once reached (a function of the record)

    # -- the pass ------------------------------------------------------------------------------
    async def run(self, controller: ControllerClient | None) -> SearchExperimentSpec | None:
        """Carry out the current phase; the retrain spec once phase 3 is reached (the reconciler runs
        it as ordinary Trials), None while phase 1 or 2 runs. Fatal when the search cannot go on."""
        if self._retrain is not None:
            return self._retrain
        await self._load()
        assert self.supernet is not None and self.evaluations is not None
        phase = next_phase(self.spec, self.supernet, self.evaluations)
        if isinstance(phase, TrainSupernet):
            self._announce(SUPERNET, f"training the supernet in Job {names.supernet_name(self.ref.name)}")
            await self._train_supernet(controller)
            phase = next_phase(self.spec, self.supernet, self.evaluations)
        if isinstance(phase, Evaluate):
            target = phase.spec.budget.max_trials
            self._announce(
                SEARCH, f"scoring {target} candidates on the supernet in {names.evaluator_name(self.ref.name)}"
            )
            await self._search(phase, controller)
            phase = next_phase(self.spec, self.supernet, self.evaluations)
        if isinstance(phase, OneShotFailed):
            await self.stop_evaluator()
            raise Fatal(phase.reason, phase.message)
        if isinstance(phase, Retrain):
            await self.stop_evaluator()
            top = phase.spec.strategy.retrain.architectures if phase.spec.strategy.retrain else []
            self._announce(RETRAIN, f"retraining the top {len(top)} from scratch as Trials")
            self._retrain = phase.spec
            return phase.spec
        return None

    def respec(self, spec: SearchExperimentSpec) -> SearchExperimentSpec:
        """An accepted budget edit: the spec to run now (phase 3's retrain spec once there)."""
        self.spec = spec
        if self._retrain is not None:
            assert self.supernet is not None and self.evaluations is not None
            phase = next_phase(spec, self.supernet, self.evaluations)
            if isinstance(phase, Retrain):
                self._retrain = phase.spec
                return phase.spec
        return spec

    @property
    def phase(self) -> str | None:
        return self.announced

    def _announce(self, phase: str, message: str) -> None:
        self.message = message
        if self.announced != phase:
            self.announced = phase
            self.log.info("one-shot phase started", extra={"phase": phase})
            self.event("Normal", "PhaseStarted", f"phase {phase}: {message}")

    async def _load(self) -> None:
        if self.supernet is None:
            self.supernet = supernet_from_status(self.current_status().get("oneShot"))
        if self.evaluations is None:
            found = await self.runtime.api.list(
                "v1", "ConfigMap", self.ref.namespace, oneshot_manifests.record_selector(self.ref.name)
            )
            mine = [cm for cm in found if owned_by(cm, self.ref.uid)]
            self.chunks = {int(cm["metadata"]["name"].rpartition("-")[2]) for cm in mine}
            self.evaluations = oneshot_manifests.read_record(mine)
            self.runtime.metrics.oneshot_evaluations.labels(self.ref.namespace, self.ref.name).set(
                len(self.evaluations)
            )
            if self.evaluations:
                self.log.info("evaluation record read", extra={"evaluations": len(self.evaluations)})

    # -- phase 1 -------------------------------------------------------------------------------
    async def _train_supernet(self, controller: ControllerClient | None) -> None:
        assert self.supernet is not None
        indexes = self.runtime.indexes
        assert indexes is not None
        name = names.supernet_name(self.ref.name)
        jobs = [j for j in indexes.job_of(self.ref.namespace, name) if j.owner_uid == self.ref.uid]
        if not jobs:
            channel = None
            if oneshot_manifests.needs_controller(self.spec):  # ENAS: the trainer draws its paths from the controller
                if controller is None:
                    self.message = "waiting for the controller pod (the supernet's paths come from its policy)"
                    return
                at = controller.endpoint
                channel = ProgressChannel.of(self.ref, (at.host, at.port), at.token)
            with contextlib.suppress(AlreadyExists):  # created by an earlier pass: the cache catches up
                await self.runtime.api.create(oneshot_manifests.supernet_job(self.ref, self.spec, channel))
            return
        job = jobs[0]
        pods = [p for p in indexes.pods_of(self.ref.namespace, name) if p.owner_uid == job.uid]
        if self.start_check is not None:
            await self.start_check(self.spec, pods, datetime.now(UTC))
        events = outcomes.events_of(0, pods, job)
        if not outcomes.decided(events) and job.complete:  # the pod update may lag the Job's: read them
            listed = await self.runtime.api.list("v1", "Pod", self.ref.namespace, {names.LABEL_TRIAL: name})
            pods = [p for p in (PodView.parse(b) for b in listed) if p.owner_uid == job.uid]
            events = outcomes.events_of(0, pods, job, pods_listed=True)
        record = supernet_events_record(self.supernet, events, len(pods), self.spec.trial_template.retries)
        if record == self.supernet:
            return
        if record.succeeded or record.failed:  # phase 1's record, written before phase 2 starts
            await self.write_status({"oneShot": {**self.status_block(), "supernet": supernet_wire(record)}})
            self.log.info("supernet ended", extra={"succeeded": record.succeeded, "reason": record.reason})
            self.event(
                "Normal" if record.succeeded else "Warning",
                "SupernetTrained" if record.succeeded else "SupernetFailed",
                f"{name}: {json.dumps(dict(record.metrics)) if record.succeeded else record.message or record.reason}",
            )
        self.supernet = record

    # -- phase 2 -------------------------------------------------------------------------------
    def _evaluator_endpoints(self) -> list[Endpoint]:
        """The ready evaluator pods' addresses (``oneShot.evaluators`` once all are up)."""
        indexes = self.runtime.indexes
        assert indexes is not None
        service = names.evaluator_name(self.ref.name)
        for view in indexes.endpoints_of(self.ref.namespace, self.ref.name):
            if view.service == service and view.addresses:
                port = view.port or oneshot_manifests.EVALUATOR_PORT
                return [Endpoint(address, port, "") for address in view.addresses]
        return []

    async def _ensure_evaluator(self) -> None:
        if self.evaluator_created:
            return
        for obj in (
            oneshot_manifests.evaluator_service(self.ref),
            oneshot_manifests.evaluator_deployment(self.ref, self.spec),
        ):
            with contextlib.suppress(AlreadyExists):
                await self.runtime.api.create(obj)
        self.evaluator_created = True

    async def stop_evaluator(self) -> None:
        """Scale the evaluator to zero once phase 2 is over (once per process; missing is fine)."""
        if self.evaluator_stopped:
            return
        name = names.evaluator_name(self.ref.name)
        with contextlib.suppress(NotFound):
            deployment = await self.runtime.api.get("apps/v1", "Deployment", self.ref.namespace, name)
            if (deployment.get("spec") or {}).get("replicas") != 0:
                await self.runtime.api.patch(
                    "apps/v1", "Deployment", self.ref.namespace, name, {"spec": {"replicas": 0}}
                )
        self.evaluator_stopped = True

    async def _check_evaluator(self) -> None:
        """An evaluator that is not ready: read its pods (at most every EVALUATOR_CHECK_S) and fail the
        experiment once its container keeps failing to start; else look again later."""
        now = time.monotonic()
        if now - self.evaluator_checked >= EVALUATOR_CHECK_S:
            self.evaluator_checked = now
            pods = await self.runtime.api.list("v1", "Pod", self.ref.namespace, names.evaluator_selector(self.ref.name))
            if self.start_check is not None:
                await self.start_check(self.spec, [PodView.parse(p) for p in pods], datetime.now(UTC))
            problem = evaluator_failure(pods)
            if problem is not None:
                self.log.warning("evaluator failed", extra={"problem": problem})
                await self.stop_evaluator()
                raise Fatal("EvaluatorFailed", problem)
        if self.wake_later is not None:
            self.wake_later(EVALUATOR_CHECK_S)

    async def _search(self, phase: Evaluate, controller: ControllerClient | None) -> None:
        await self._ensure_evaluator()
        ready = self._evaluator_endpoints()
        if not ready:
            await self._check_evaluator()
        if controller is None or not ready:
            self.message = "waiting for the " + ("controller" if controller is None else "evaluator") + " pod"
            return
        token = controller.endpoint.token
        evaluators = [ControllerClient(self.runtime.http, Endpoint(at.host, at.port, token)) for at in ready]
        try:
            await self._evaluate(phase.spec, controller, evaluators)
        except BaseException:
            self.driver, self.synced = None, None  # rebuilt from the record on the next pass
            self.pending.clear()
            raise
        finally:
            written = await self._write_record()
            if not written:
                self.driver, self.synced = None, None
                self.pending.clear()
        if not written:  # a later pass writes them again, from a driver rebuilt on the record
            raise Requeue("the evaluation record was not written; the candidates after it are scored again", 1.0)

    async def _evaluate(
        self, spec: SearchExperimentSpec, controller: ControllerClient, evaluators: Sequence[ControllerClient]
    ) -> None:
        assert self.evaluations is not None
        if self.driver is None:
            self.driver = Driver(spec, self.evaluations, name_prefix=f"{self.ref.name}-eval")
            self.pending = deque(self.driver.handle(Tick(0.0)))
            self.synced = None
        driver = self.driver
        if self.synced is None or self.synced[0] != controller.endpoint:
            state = await controller.replay(self.ref.name, spec.to_wire(), driver.trials)
            self.synced = (controller.endpoint, state.instance)
            self.runtime.metrics.controller_replays.labels(self.ref.namespace, self.ref.name).inc()
        deadline = time.monotonic() + PASS_SECONDS
        while self.pending and time.monotonic() < deadline and len(self.unwritten) < PASS_EVALUATIONS:
            command = self.pending.popleft()
            if isinstance(command, AskFor):
                candidates, state = await controller.ask(command.index, command.count)
                self._check(state.instance)
                self.pending.extend(driver.handle(Proposed(tuple(candidates))))
            elif isinstance(command, (Create, Relaunch)):
                batch = [command]  # every candidate proposed by now, scored side by side
                while self.pending and isinstance(self.pending[0], (Create, Relaunch)):
                    batch.append(self.pending.popleft())
                for scored, answer in zip(batch, await score(evaluators, batch), strict=True):
                    attempt = 1 if isinstance(scored, Create) else scored.attempt
                    result = answer.get("result")
                    code = answer.get("exitCode")
                    ended = AttemptEnded(
                        scored.trial.index,
                        attempt,
                        int(code) if code is not None else None,
                        json.dumps(result) if result else None,
                    )
                    self.pending.extend(driver.handle(AttemptStarted(scored.trial.index, attempt), ended))
            elif isinstance(command, Tell):
                _, state = await controller.tell(command.trial)
                self._check(state.instance)
            elif isinstance(command, Store):
                self.unwritten.append(command.trial)
                self.pending.extend(driver.handle(ResultStored(command.trial.index)))
        self.message = f"{driver.told}/{spec.budget.max_trials} candidates scored on the supernet"
        if self.pending:
            self.wake()  # more to score: another pass, after the watch events that came meanwhile

    def _check(self, instance: str) -> None:
        if self.synced is None or instance != self.synced[1]:
            raise ControllerOutOfSync("the controller restarted")

    async def _write_record(self) -> bool:
        """Append the evaluations told in this pass to the ConfigMaps, in order; False if a write failed
        (the record then ends before them, and they are scored again)."""
        assert self.evaluations is not None
        if not self.unwritten:
            return True
        records, self.unwritten = self.unwritten, []
        api, ns = self.runtime.api, self.ref.namespace
        try:
            for chunk, data in sorted(oneshot_manifests.record_patches(self.ref.name, records).items()):
                if chunk not in self.chunks:
                    try:
                        await api.create(oneshot_manifests.record_config_map(self.ref, chunk, data))
                    except AlreadyExists:
                        name = names.evaluations_name(self.ref.name, chunk)
                        if not owned_by(await api.get("v1", "ConfigMap", ns, name), self.ref.uid):
                            raise Requeue(f"an older experiment's ConfigMap {name} is still being deleted") from None
                        await api.patch("v1", "ConfigMap", ns, name, {"data": data})
                    self.chunks.add(chunk)
                else:
                    await api.patch("v1", "ConfigMap", ns, names.evaluations_name(self.ref.name, chunk), {"data": data})
        except Exception as exc:  # any failure: the record ends before these
            self.log.warning("evaluation record not written", extra={"evaluations": len(records), "error": repr(exc)})
            return False
        self.evaluations.extend(records)
        self.runtime.metrics.oneshot_evaluations.labels(self.ref.namespace, self.ref.name).set(len(self.evaluations))
        return True

    # -- status --------------------------------------------------------------------------------
    def status_block(self) -> dict[str, Any]:
        """``status.oneShot`` as it should read now (what the status shows, before the first pass)."""
        current = dict(self.current_status().get("oneShot") or {})
        if self.supernet is None or self.evaluations is None or self.announced is None:
            return current
        if self._wire is None or self._wire[0] != len(self.evaluations):
            self._wire = (len(self.evaluations), evaluations_wire(self.spec, self.evaluations))
        return {"phase": self.announced, "supernet": supernet_wire(self.supernet), **self._wire[1]}

"""The experiment loop, written once: a pure state machine fed events, answering commands.

Local mode, the tabular benchmark and the operator all run an experiment the same way: ask the
strategy for candidates, create trials, judge each finished attempt, tell the strategy, store the
result, stop when the budget or the goal says so. This module is that loop. It performs no I/O and
reads no clock; adapters carry its commands to processes, pods, files and HTTP, and hand back what
happened as events. So the three adapters cannot disagree about what a finished attempt means, when
to ask, or when the experiment is over.

Lifecycle (how an adapter drives it)::

    driver = Driver(spec, history, name_prefix=experiment)       # history: the stored trials
    commands = driver.handle(Tick(elapsed))                     # what to do now
    # carry the commands out in order; what they produce (Proposed, ResultStored, AttemptEnded, ...)
    # goes back through driver.handle(...), which answers with the next commands.

Rules it owns, in one place:

- **Asking.** :func:`kubenas.core.engine.decide_on` says how many trials may start; the driver asks
  the strategy for exactly that many (``AskFor``) and counts them active until they are told, so it
  never asks twice for the same slot.
- **Judging.** An ended attempt is judged by :func:`kubenas.core.outcome.judge` (exit code, result
  text, attempt number, retries): retried (``Relaunch``), or final. A final result becomes a record
  with the reward rule of :func:`kubenas.core.records.reward_of` and its place in tell order.
- **Replay order.** Commands that touch the strategy (``AskFor``, ``Tell``) must be carried out in
  the order given; the tell position recorded on each result (``tellSequence``, ``asksBeforeTell``)
  is the one the strategy saw, which is what makes a replay exact.
- **Store before create.** A candidate asked after a result was told becomes a trial (``Create``)
  only once that result is stored (``ResultStored``): a replay of the stored history then always
  sees every tell that came before an ask. The experiment finishes only once every told result is
  stored.
- **Stopping rules.** With ``spec.earlyStopping``, each :class:`Progress` point of the objective
  metric extends the trial's curve (kept in its record, bounded) and :mod:`kubenas.core.pruning`
  judges it with Optuna's pruner. A trial the rule stops gets ``Prune`` (end its process or pod at
  once), then ``Tell`` and ``Store`` like any result: phase ``Pruned``, the metrics of that point, the
  reward rule applied to them. The strategy sees it as a usable, low-fidelity result (its reward is
  what the trial reached when it stopped, a pessimistic estimate), and it counts as finished.
- **Several objectives.** With ``objective.metrics``, the reward (and so the best trial and the
  target) is the first objective's; :attr:`Driver.front` keeps the Pareto front of all of them
  (:mod:`kubenas.core.pareto`), updated as each result settles.
- **GPU time.** A trial's GPU time is its wall time (from its first attempt's start to its result,
  on the clock of the :class:`Tick` events) times the GPUs its template asks for
  (:meth:`~kubenas.api.v1alpha1.Resources.gpus`); it is recorded on the result (``gpu_seconds``).
  With ``budget.maxGpuHours`` the engine finishes the experiment once the finished trials and the
  running ones together reach it, and the running ones are cancelled (their time recorded too).
  A driver rebuilt from history counts a trial that was running from the rebuild on.
- **Cost.** Counts, the best trial and the front are kept up to date event by event: handling an
  event costs the same after ten trials as after ten thousand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubenas.api.v1alpha1 import SearchExperimentSpec, TrialCounts
from kubenas.core.engine import Ask, Finish, Wait, decide_on, refused_configuration
from kubenas.core.gpus import trial_gpus
from kubenas.core.outcome import DIVERGED, judge
from kubenas.core.pareto import Front
from kubenas.core.records import (
    ACTIVE_PHASES,
    MissingMetric,
    TrialRecord,
    better,
    reward_of,
    trial_name,
    trial_seed,
    violations,
)
from kubenas.core.space import Architecture

if TYPE_CHECKING:
    from kubenas.core.pruning import CurveJudge

__all__ = [
    "Ask",
    "AskFor",
    "AttemptEnded",
    "AttemptStarted",
    "Cancel",
    "Candidate",
    "Command",
    "Create",
    "Driver",
    "Event",
    "Finish",
    "Interrupted",
    "MarkRunning",
    "Progress",
    "Proposed",
    "Prune",
    "Relaunch",
    "ResultStored",
    "Store",
    "Tell",
    "Tick",
    "TrialLost",
    "Wait",
]


# -- events: what happened ---------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One candidate the strategy proposed: the answer to the ``index``-th ask."""

    index: int
    architecture: Architecture
    architecture_id: str = ""
    #: ask indexes of the candidates it was derived from (its lineage; empty when drawn anew)
    parents: tuple[int, ...] = ()


@dataclass(frozen=True)
class Proposed:
    """The strategy answered an :class:`AskFor` (candidates already known are ignored)."""

    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class AttemptStarted:
    """Attempt ``attempt`` (1-based) of trial ``index`` is running."""

    index: int
    attempt: int = 1
    started_at: str | None = None


@dataclass(frozen=True)
class AttemptEnded:
    """An attempt ended with this exit code (None: killed or unknown) and result text (the trial
    contract's result file, a pod's termination message)."""

    index: int
    attempt: int
    exit_code: int | None
    result: str | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class TrialLost:
    """The runtime gave the trial up for a reason of its own (a Job that failed or ran past its
    deadline, a result that is gone, a trainer the cluster refuses to run): it is failed for good."""

    index: int
    reason: str
    message: str = ""
    attempts: int | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class Interrupted:
    """The trial's attempt was lost through no fault of the candidate (the run that held it stopped):
    it starts again, and the lost attempt does not count against its retries."""

    index: int


@dataclass(frozen=True)
class Progress:
    """Trial ``index`` reported its metrics after step ``step`` (an epoch) while running."""

    index: int
    step: int
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class ResultStored:
    """The record of a told result is stored (Trial status written, journal line synced)."""

    index: int


@dataclass(frozen=True)
class Tick:
    """Time passed: ``elapsed_seconds`` since the experiment started."""

    elapsed_seconds: float


Event = Proposed | AttemptStarted | AttemptEnded | TrialLost | Interrupted | Progress | ResultStored | Tick


# -- commands: what to do ----------------------------------------------------------------------
@dataclass(frozen=True)
class AskFor:
    """Ask the strategy for candidates ``index`` .. ``index + count - 1``; answer with :class:`Proposed`."""

    index: int
    count: int


@dataclass(frozen=True)
class Create:
    """Store the new trial and start its first attempt (a Trial and its Job; a journal line and a process)."""

    trial: TrialRecord
    architecture_id: str
    seed: int


@dataclass(frozen=True)
class MarkRunning:
    """The trial runs: record it (phase Running, attempts, start time)."""

    trial: TrialRecord
    started_at: str | None = None


@dataclass(frozen=True)
class Relaunch:
    """Start attempt ``attempt`` of the trial. On Kubernetes the Job's backoff carries this out itself."""

    trial: TrialRecord
    attempt: int
    reason: str | None = None


@dataclass(frozen=True)
class Tell:
    """Tell the strategy the result of the ``trial.index``-th candidate (its record carries the observation)."""

    trial: TrialRecord


@dataclass(frozen=True)
class Store:
    """Store the finished trial's record; answer with :class:`ResultStored`."""

    trial: TrialRecord
    finished_at: str | None = None


@dataclass(frozen=True)
class Cancel:
    """Stop the trial's attempt now and store it as failed (Cancelled): the experiment is over."""

    trial: TrialRecord


@dataclass(frozen=True)
class Prune:
    """The stopping rule ended the trial: stop its attempt now (the GPU is free for the next trial).
    Its result (phase Pruned) follows as :class:`Tell` and :class:`Store`; a later exit is ignored."""

    trial: TrialRecord


Command = AskFor | Create | MarkRunning | Relaunch | Tell | Store | Cancel | Prune | Finish


# -- the machine -------------------------------------------------------------------------------
class Driver:
    """One experiment's loop state, rebuilt from its stored history (see the module docstring).

    Not thread-safe: one owner feeds it events and carries out its commands in order.
    """

    def __init__(
        self,
        spec: SearchExperimentSpec,
        history: Sequence[TrialRecord] = (),
        *,
        name_prefix: str = "trial",
        elapsed_seconds: float = 0.0,
    ) -> None:
        self.spec = spec
        self.name_prefix = name_prefix
        self.retries = spec.trial_template.retries
        self.elapsed = elapsed_seconds
        self._trials: dict[int, TrialRecord] = {}
        self._active: dict[int, None] = {}  # indexes of Pending and Running trials, in ask order
        self._by_phase: dict[str, int] = {}
        self._configuration_errors = 0  # failed trials that refused their configuration (exit 2)
        self.best: TrialRecord | None = None
        self.told = 0
        self.asked = 0  # candidates the strategy has been asked for (answered or not)
        self._unstored: dict[int, int] = {}  # told index -> asksBeforeTell, result not stored yet
        self._last_tell_asks = 0  # asksBeforeTell of the latest tell
        self._held: list[Create] = []  # creations waiting for earlier results to be stored
        self.finished: Finish | None = None
        self.waiting: str | None = None  # why nothing starts now (the engine's Wait), for status messages
        #: the Pareto front of a multi-objective search (None with one objective)
        self.front: Front | None = Front(spec.objective.objectives()) if spec.objective.multi else None
        self.gpus = trial_gpus(spec.trial_template).count  # GPUs per trial, short form or pod template
        self.gpu_seconds_done = sum(t.gpu_seconds or 0.0 for t in history)  # GPU time of finished trials
        for rec in sorted(history, key=lambda t: t.index):
            self._put(rec)
            if rec.told:
                self.told += 1
        self.asked = len(self._trials)
        #: running trial -> elapsed seconds at its first start (a rebuilt driver: the rebuild's)
        self._started: dict[int, float] = {i: elapsed_seconds for i, t in self._trials.items() if t.phase == "Running"}
        self._judge: CurveJudge | None = None
        if spec.early_stopping is not None:
            from kubenas.core.pruning import CurveJudge  # Optuna loads only for experiments that prune

            self._judge = CurveJudge(spec.early_stopping, spec.objective, history)

    # -- reading -----------------------------------------------------------------------------
    @property
    def counts(self) -> TrialCounts:
        """Trials by phase; trials asked for but not proposed yet count as pending."""
        by_phase = dict(self._by_phase)
        waiting = self.asked - len(self._trials)
        by_phase["Pending"] = by_phase.get("Pending", 0) + waiting
        return TrialCounts(total=self.asked, **{phase.lower(): n for phase, n in by_phase.items()})

    @property
    def trials(self) -> list[TrialRecord]:
        """Every trial known, in ask order (a copy: O(history), for reports, not for every event)."""
        return [self._trials[i] for i in sorted(self._trials)]

    def trial(self, index: int) -> TrialRecord:
        return self._trials[index]

    def active_trials(self) -> list[TrialRecord]:
        """Pending and Running trials (O(active), not O(history)): what an executor watches."""
        return [self._trials[i] for i in self._active]

    def respec(self, spec: SearchExperimentSpec) -> None:
        """An accepted spec edit (a larger budget, other parallelism): later decisions follow it."""
        self.spec = spec
        self.retries = spec.trial_template.retries

    def ask_lost(self) -> None:
        """An :class:`AskFor` was not answered (the strategy's process went away): ask again later.

        Only while no tell recorded since counts those asks: the driver never emits a Tell after an
        AskFor within one :meth:`handle`, so an executor that feeds each pass's events in one call
        and stops at a failed AskFor never meets that case."""
        if self._last_tell_asks > len(self._trials):
            raise RuntimeError("a recorded tell counts the lost asks; the history must be replayed with them")
        self.asked = len(self._trials)

    @property
    def active(self) -> int:
        return self.counts.pending + self.counts.running

    def seconds_to_deadline(self) -> float | None:
        """Seconds until ``maxDuration`` passes or, at the running trials' rate, ``maxGpuHours`` is
        used up (None when neither can happen): when to send the next Tick."""
        waits = []
        limit = self.spec.budget.max_duration_seconds()
        if limit is not None and self.elapsed < limit:
            waits.append(limit - self.elapsed)
        gpu_limit = self.spec.budget.max_gpu_hours
        rate = self.gpus * len(self._started)
        if gpu_limit is not None and rate > 0:
            waits.append(max(0.0, (gpu_limit * 3600 - self.gpu_seconds_used) / rate))
        return min(waits, default=None)

    @property
    def gpu_seconds_used(self) -> float:
        """GPU time of the finished trials and of the running ones so far (O(running))."""
        running = sum(max(0.0, self.elapsed - t) for t in self._started.values())
        return self.gpu_seconds_done + running * self.gpus

    def _gpu_time(self, rec: TrialRecord) -> TrialRecord:
        """The record with the GPU time it used, now that it ends (counted as done from here on)."""
        started = self._started.pop(rec.index, None)
        if not self.gpus:
            return rec  # no GPU asked: nothing to record
        used = 0.0 if started is None else max(0.0, self.elapsed - started) * self.gpus
        self.gpu_seconds_done += used
        return rec.with_(gpu_seconds=used)

    def trial_name(self, index: int) -> str:
        return trial_name(self.name_prefix, index)

    # -- driving -------------------------------------------------------------------------------
    def handle(self, *events: Event) -> list[Command]:
        """Apply ``events`` in order and answer with what to do next."""
        out: list[Command] = []
        for event in events:
            out.extend(self._apply(event))
        out.extend(self._release())
        out.extend(self._plan())
        return out

    def start(self) -> list[Command]:
        """The first commands after construction (a Tick at the elapsed time given)."""
        return self.handle(Tick(self.elapsed))

    # -- events --------------------------------------------------------------------------------
    def _apply(self, event: Event) -> Iterable[Command]:
        if isinstance(event, Tick):
            self.elapsed = max(self.elapsed, event.elapsed_seconds)
            return ()
        if isinstance(event, Proposed):
            return self._proposed(event.candidates)
        if isinstance(event, ResultStored):
            self._unstored.pop(event.index, None)
            return ()
        rec = self._trials.get(event.index)
        if rec is None or rec.done:
            return ()  # a late or repeated report: the trial is settled already
        if isinstance(event, AttemptStarted):
            if rec.phase == "Running" and rec.attempts >= event.attempt:
                return ()
            self._started.setdefault(rec.index, self.elapsed)
            rec = self._put(rec.with_(phase="Running", attempts=max(rec.attempts, event.attempt)))
            return (MarkRunning(rec, event.started_at),)
        if isinstance(event, Progress):
            return self._progress(rec, event)
        if isinstance(event, Interrupted):
            rec = self._put(rec.with_(phase="Pending"))
            return (Relaunch(rec, max(1, rec.attempts), "Interrupted"),)
        if isinstance(event, TrialLost):
            attempts = max(rec.attempts, event.attempts or 0)
            return self._settle(
                rec.with_(attempts=attempts),
                {},
                failed=True,
                reason=event.reason,
                message=event.message,
                finished_at=event.finished_at,
            )
        assert isinstance(event, AttemptEnded)
        if event.attempt < rec.attempts:
            return ()  # an earlier attempt, judged already
        outcome = judge(event.exit_code, event.result, event.attempt, self.retries)
        rec = rec.with_(attempts=max(rec.attempts, event.attempt))
        if outcome.verdict == "retry":
            rec = self._put(rec.with_(phase="Running", attempts=event.attempt + 1, reason=outcome.reason))
            return (Relaunch(rec, event.attempt + 1, outcome.reason),)
        return self._settle(
            rec,
            outcome.metrics,
            failed=outcome.verdict != "succeeded",
            reason=outcome.reason,
            message=outcome.message,
            finished_at=event.finished_at,
        )

    def _proposed(self, candidates: Iterable[Candidate]) -> Iterable[Command]:
        for c in sorted(candidates, key=lambda c: c.index):
            if c.index in self._trials:
                continue
            if c.index != len(self._trials):
                raise ValueError(f"candidate #{c.index} proposed before #{len(self._trials)}")
            rec = TrialRecord(
                index=c.index, architecture=dict(c.architecture), name=self.trial_name(c.index), parents=c.parents
            )
            rec = self._put(rec)
            self.asked = max(self.asked, c.index + 1)
            self._held.append(Create(rec, c.architecture_id, trial_seed(self.spec.strategy.seed, c.index)))
        return ()  # released by _release, in order, once earlier results are stored

    def _progress(self, rec: TrialRecord, event: Progress) -> list[Command]:
        """A point of the trial's curve: kept (bounded, growing), then judged by the stopping rule."""
        from kubenas.core.pruning import accepts_point

        value = event.metrics.get(self.spec.objective.metric)
        if value is None or not accepts_point(rec.curve, event.step, float(value)):
            return []
        step, value = int(event.step), float(value)
        rec = self._put(rec.with_(curve=(*rec.curve, (step, value))))
        if self._judge is None or not self._judge.should_stop(rec.index, step, value):
            return []
        metrics = {k: float(v) for k, v in event.metrics.items() if math.isfinite(float(v))}
        reward, _ = reward_of(self.spec.objective, metrics)  # constraints judged on what was reported
        assert self.spec.early_stopping is not None
        rule = self.spec.early_stopping.rule
        rec = rec.with_(
            phase="Pruned",
            reward=reward,
            metrics=metrics,
            reason="EarlyStopped",
            message=f"stopped at step {step} by the {rule} rule",
        )
        return [Prune(rec), *self._tell_and_store(rec, None)]

    def _settle(
        self,
        rec: TrialRecord,
        metrics: Mapping[str, float],
        *,
        failed: bool,
        reason: str | None,
        message: str | None,
        finished_at: str | None,
    ) -> list[Command]:
        """A final result: the reward rule, the tell position, then Tell and Store."""
        metrics = {k: float(v) for k, v in metrics.items()}
        reward: float | None = None
        phase = "Failed"
        if not failed:
            try:
                reward, feasible = reward_of(self.spec.objective, metrics)
                phase = "Succeeded" if feasible else "Infeasible"
                if not feasible:
                    reason = "ConstraintViolated"
                    message = "; ".join(violations(self.spec.objective, metrics)) or message
            except MissingMetric as exc:
                if reason == DIVERGED:  # the loss became non-finite: the worst result, not a failure
                    phase = "Infeasible"
                    message = "; ".join(x for x in (message, str(exc).strip("'\"")) if x)
                else:
                    reason, message = "MissingMetric", str(exc).strip("'\"")
        rec = rec.with_(phase=phase, reward=reward, metrics=metrics, reason=reason, message=message)
        return self._tell_and_store(rec, finished_at)

    def _tell_and_store(self, rec: TrialRecord, finished_at: str | None) -> list[Command]:
        """A final record: its GPU time, its place in tell order, then Tell and Store."""
        rec = self._gpu_time(rec)
        rec = self._put(rec.with_(tell_sequence=self.told, asks_before_tell=self.asked))
        self.told += 1
        self._unstored[rec.index] = self._last_tell_asks = self.asked
        if self._judge is not None:
            self._judge.finished(rec)
        return [Tell(rec), Store(rec, finished_at)]

    # -- what next -----------------------------------------------------------------------------
    def _release(self) -> list[Command]:
        """Creations whose earlier results are all stored, in ask order."""
        if not self._held:
            return []
        floor = min(self._unstored.values(), default=math.inf)  # earliest ask position still waiting
        ready: list[Command] = [c for c in self._held if c.trial.index < floor]
        self._held = [c for c in self._held if c.trial.index >= floor]
        return ready

    def _plan(self) -> list[Command]:
        if self.finished is not None:
            return []
        action = decide_on(
            self.spec, self.counts, self.best, self.elapsed, self.gpu_seconds_used, self._configuration_errors
        )
        self.waiting = action.reason if isinstance(action, Wait) else None
        if isinstance(action, Ask):
            index = self.asked
            self.asked += action.count
            return [AskFor(index, action.count)]
        if isinstance(action, Wait):
            return []
        if self._unstored or self._held:
            return []  # finish only once every told result is stored
        self.finished = action
        out: list[Command] = []
        for rec in self.trials:
            if rec.phase in ACTIVE_PHASES:
                message = f"the experiment finished: {action.reason}"
                cancelled = self._gpu_time(rec.with_(phase="Failed", reason="Cancelled", message=message))
                out.append(Cancel(self._put(cancelled)))
        out.append(action)
        return out

    # -- bookkeeping ---------------------------------------------------------------------------
    def _put(self, rec: TrialRecord) -> TrialRecord:
        """Replace a trial's record, keeping counts and the best trial current."""
        old = self._trials.get(rec.index)
        if old is not None:
            self._by_phase[old.phase] -= 1
            self._configuration_errors -= refused_configuration(old)
        self._configuration_errors += refused_configuration(rec)
        self._by_phase[rec.phase] = self._by_phase.get(rec.phase, 0) + 1
        self._trials[rec.index] = rec
        if rec.phase in ACTIVE_PHASES:
            self._active[rec.index] = None
        else:
            self._active.pop(rec.index, None)
        if better(rec, self.best):
            self.best = rec
        if self.front is not None:
            self.front.add(rec)
        return rec

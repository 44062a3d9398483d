"""``kubenas run``: a SearchExperiment on this machine, driven by the core's experiment driver.

The decisions are the operator's, made by the same :class:`~kubenas.core.driver.Driver`: this module
only starts trials as subprocesses, blocks until one exits or reports progress (an epoch's metrics,
read from its stdout), appends asks and results to the journal and hands each back to the driver.
A trial the stopping rule prunes is stopped at once.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kubenas.api.v1alpha1 import Objective, SearchExperiment, SearchExperimentSpec
from kubenas.core.driver import (
    AskFor,
    AttemptEnded,
    AttemptStarted,
    Cancel,
    Command,
    Create,
    Driver,
    Interrupted,
    Prune,
    Relaunch,
    ResultStored,
    Store,
    Tell,
    Tick,
    TrialLost,
)
from kubenas.core.errors import ReplayError, SpecError
from kubenas.core.records import ACTIVE_PHASES, TrialRecord, objective_value
from kubenas.core.search import Search
from kubenas.core.spec_changes import judge_edit
from kubenas.load import load_experiment
from kubenas.local.errors import LocalRunError, ResultsError, write_error
from kubenas.local.gpus import GpuError
from kubenas.local.gpus import plan as plan_gpus
from kubenas.local.journal import JOURNAL, Journal, read_journal
from kubenas.local.launch import launch_of
from kubenas.local.lock import hold, release
from kubenas.local.process import Attempt, FollowFailed, TrialLauncher
from kubenas.local.report import leaderboard, summary, write_results
from kubenas.local.retrain import resolve as resolve_retrain

SPEC_FILE = "experiment.yaml"
#: how long a pruned trial may take to exit after SIGTERM before it is killed: its GPU is wanted now
PRUNE_GRACE_SECONDS = 2.0


class ResumeError(LocalRunError):
    """The results folder cannot be resumed (missing, or made by another experiment)."""


@dataclass
class RunResult:
    phase: str
    reason: str
    message: str
    results: Path
    interrupted: bool = False


def prepare(experiment_file: Path | None, results: Path | None, resume: Path | None) -> tuple[SearchExperiment, Path]:
    """The experiment and its results folder, for a new run or a resumed one.

    A resumed run may be given the experiment file again with the edits a running experiment on
    Kubernetes accepts (``budget.maxTrials`` upwards, ``budget.parallelTrials``); any other difference
    is refused with the field that differs.

    The folder is locked for this process (:mod:`kubenas.local.lock`) before anything is written to
    it, and stays locked until :func:`kubenas.local.lock.release` or the process ends: FolderInUse
    when another run holds it.
    """
    if resume is not None:
        if results is not None and results.resolve() != resume.resolve():
            raise ResumeError(f"--results {results} with --resume {resume}: a resumed run continues in {resume}")
        spec_path = resume / SPEC_FILE
        if not spec_path.exists():
            raise ResumeError(f"{resume} holds no {SPEC_FILE}: not a Kubenas results folder")
        taken = hold(resume)
        try:
            return _prepare_resume(experiment_file, resume), resume
        except BaseException:
            if taken:
                release(resume)
            raise
    if experiment_file is None:
        raise ResumeError("give an experiment file, or --resume DIR")
    exp = load_experiment(experiment_file)
    _check_command(exp)
    _check_gpus(exp)
    folder = results or Path("results") / exp.metadata.name
    if folder.exists() and not folder.is_dir():
        raise ResultsError(f"{folder} is a file, not a results folder: choose another --results")
    if (folder / JOURNAL).exists():
        raise ResumeError(f"{folder} already holds a run: use --resume {folder}, or choose --results")
    try:  # a retrain's architectures are read once, now, and kept in the folder's experiment.yaml
        exp = resolve_retrain(exp, folder)
    except SpecError as exc:
        raise ResumeError(str(exc)) from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # read-only, or below a file
        raise ResultsError(f"cannot create the results folder {folder}: {exc.strerror or exc}") from None
    taken = hold(folder)
    try:
        if (folder / JOURNAL).exists():  # a run that started here since the check above
            raise ResumeError(f"{folder} already holds a run: use --resume {folder}, or choose --results")
        _write_spec(folder, exp)
    except BaseException:
        if taken:
            release(folder)
        raise
    return exp, folder


def _prepare_resume(experiment_file: Path | None, resume: Path) -> SearchExperiment:
    """The experiment recorded in ``resume``, with the accepted edits of ``experiment_file`` if given."""
    exp = load_experiment(resume / SPEC_FILE)
    if experiment_file is not None:
        given = load_experiment(experiment_file)
        spec, verdict = judge_edit(exp.spec, given.spec)
        if not verdict.accepted:
            raise ResumeError(f"{experiment_file} cannot continue the run in {resume}: {verdict.message}")
        if spec is not exp.spec:
            exp = exp.model_copy(update={"spec": spec})
            _write_spec(resume, exp)
    _check_command(exp)
    _check_gpus(exp)
    return exp


def _write_spec(folder: Path, exp: SearchExperiment) -> None:
    path = folder / SPEC_FILE
    try:
        path.write_text(yaml.safe_dump(exp.to_wire(), sort_keys=False))
    except OSError as exc:
        raise write_error(path, exc) from None


def _check_command(exp: SearchExperiment) -> None:
    """A trial command that cannot start fails every trial: say so once, before any trial runs."""
    template = exp.spec.trial_template
    if not template.command:
        raise ResumeError("spec.trialTemplate.command: local mode needs the command that runs a trial")
    program = template.command[0]
    if "/" in program:
        path = Path(program) if Path(program).is_absolute() else Path(launch_of(template).working_dir or ".") / program
        runnable = path.is_file() and os.access(path, os.X_OK)
    else:
        runnable = shutil.which(program) is not None
    if not runnable:
        raise ResumeError(f"spec.trialTemplate.command: {program!r} is not an executable found on PATH")


def _check_gpus(exp: SearchExperiment) -> None:
    """A trial that asks for more GPUs than this machine has could never start: refuse the run now."""
    try:
        plan_gpus(exp.spec)
    except GpuError as exc:
        raise ResumeError(str(exc)) from None


def run(exp: SearchExperiment, folder: Path, console: Console | None = None) -> RunResult:
    """Run (or continue) the experiment recorded in ``folder`` until the driver says it is finished.

    This is an executor of :class:`~kubenas.core.driver.Driver`: it carries the driver's commands out
    as subprocesses and journal lines and hands back what happened; every decision is the driver's.
    """
    console = console or Console()
    taken = hold(folder)  # a no-op after prepare, which took it
    try:
        return _run(exp, folder, console)
    finally:
        if taken:
            release(folder)


def replayed(spec: SearchExperimentSpec, history: list[TrialRecord], journal: Path) -> Search:
    """The strategy rebuilt from ``history``; ResumeError naming the journal when it does not replay."""
    try:
        return Search(spec, history)
    except SpecError:
        raise
    except ReplayError as exc:
        raise ResumeError(
            f"{journal} does not replay with the experiment in {journal.parent} (was its {SPEC_FILE} edited?): {exc}"
        ) from None
    except ValueError as exc:  # a history with a gap: lines removed from the journal
        raise ResumeError(f"{journal} cannot be replayed: {exc}") from None


def _run(exp: SearchExperiment, folder: Path, console: Console) -> RunResult:
    history, elapsed_before = read_journal(folder)
    for rec in history:  # attempts cut short by a previous stop start again from scratch
        if not rec.told:
            shutil.rmtree(folder / "trials" / rec.name, ignore_errors=True)
    trial_dirs = folder / "trials"
    if not history and (folder / JOURNAL).exists() and trial_dirs.is_dir() and any(trial_dirs.iterdir()):
        console.print(
            f"{folder / JOURNAL} holds no events: the trials in {trial_dirs} are not recorded and run again",
            markup=False,
        )
    name = exp.metadata.name
    search = replayed(exp.spec, history, folder / JOURNAL)
    gpus = plan_gpus(exp.spec)
    # never more GPU trials at once than the devices allow: the driver asks for no more than that
    driver = Driver(gpus.limit(exp.spec), history, name_prefix=name, elapsed_seconds=elapsed_before)
    journal = Journal(folder, name, search.space, exp.spec.strategy.seed)
    launcher = TrialLauncher(exp, search.space, folder, gpus)
    if gpus.parallel is not None and gpus.parallel < exp.spec.budget.parallel_trials:
        console.print(
            f"{gpus.per_trial} GPU(s) per trial, {len(gpus.pool.devices) if gpus.pool else 0} on this machine:"
            f" at most {gpus.parallel} trials at once (parallelTrials {exp.spec.budget.parallel_trials})",
            markup=False,
        )
    cluster_only = launch_of(exp.spec.trial_template).cluster_only
    if cluster_only:
        console.print(
            f"Not set locally (their values come from the cluster, valueFrom): {', '.join(cluster_only)}",
            markup=False,
        )
    started = time.monotonic() - elapsed_before
    objective = exp.spec.objective
    lost = [rec.index for rec in history if not rec.told]  # asked before the stop: run again now
    if history:
        console.print(f"Resuming {name}: {sum(r.told for r in history)} results kept, {len(lost)} to rerun")

    def elapsed() -> float:
        return time.monotonic() - started

    def best_text() -> str:
        best = driver.best
        return (
            "best: -"
            if best is None or best.reward is None
            else f"best {objective.metric}: {objective_value(objective, best.reward):.4g}"
        )

    interrupted = False
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(name, total=exp.spec.budget.max_trials, best=best_text())
        progress.update(task, completed=driver.told)
        pending: deque[Command] = deque(driver.handle(Tick(elapsed()), *(Interrupted(i) for i in lost)))
        clock = TrialDeadlines(exp.spec.trial_template.deadline_seconds)
        try:
            while driver.finished is None:
                while pending:
                    command = pending.popleft()
                    pending.extend(_carry_out(command, search, driver, journal, launcher, elapsed(), console))
                    if isinstance(command, Store):
                        progress.update(task, advance=1, best=best_text())
                if driver.finished is not None:
                    break
                if not launcher.running:
                    raise RuntimeError("the driver waits for trials but none is running")  # a driver bug
                pending.extend(clock.expire(driver, launcher, elapsed()))
                if pending:
                    continue
                deadline = _earliest(driver.seconds_to_deadline(), clock.seconds_to_next(elapsed()))
                try:
                    attempt = launcher.done.get(timeout=deadline + 0.05 if deadline is not None else None)
                except queue.Empty:
                    pending.extend(driver.handle(Tick(elapsed())))
                    continue
                if isinstance(attempt, FollowFailed):  # its log cannot be written: end the run now
                    raise _follow_error(attempt, folder)
                if not isinstance(attempt, Attempt):  # an epoch's metrics
                    pending.extend(driver.handle(Tick(elapsed()), attempt))
                    continue
                launcher.running.pop(attempt.rec.index, None)
                pending.extend(driver.handle(Tick(elapsed()), _ended(attempt)))
        except KeyboardInterrupt:
            interrupted = True
            console.print("[yellow]Stopping: sending SIGTERM to running trials; resume with --resume[/]")
        finally:
            launcher.stop_all()  # whatever ended the run, no trial process outlives it
            journal.close()
    trials = driver.trials
    if interrupted or driver.finished is None:
        summ = summary(name, objective, trials, "Stopped", "Interrupted")
        _write_results(folder, summ, objective, trials)
        return RunResult("Stopped", "Interrupted", "stopped by the user", folder, interrupted=True)
    action = driver.finished
    summ = summary(name, objective, trials, action.phase, action.reason)
    _write_results(folder, summ, objective, trials)
    leaderboard(console, objective, trials)
    console.print(f"{action.phase}: {action.reason} ({action.message}). Results in {folder}", markup=False)
    return RunResult(action.phase, action.reason, action.message, folder)


def _earliest(*seconds: float | None) -> float | None:
    known = [x for x in seconds if x is not None]
    return min(known) if known else None


class TrialDeadlines:
    """``trialTemplate.deadlineSeconds`` on this machine, as a Job's ``activeDeadlineSeconds`` on a
    cluster: counted from a trial's first start, across its retries; a trial past it is stopped and
    given up as ``DeadlineExceeded`` (its late result, if any, changes nothing)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.first_start: dict[int, float] = {}  # running trial -> elapsed seconds at its first start
        self.expired: set[int] = set()

    def _track(self, driver: Driver, launcher: TrialLauncher, now: float) -> None:
        for index in launcher.running:
            self.first_start.setdefault(index, now)
        for index in list(self.first_start):  # ended for good: no clock (a retry keeps the first start)
            if driver.trial(index).phase not in ACTIVE_PHASES:
                del self.first_start[index]
                self.expired.discard(index)

    def expire(self, driver: Driver, launcher: TrialLauncher, now: float) -> list[Command]:
        """Stop the running trials past the limit; the driver's commands for giving them up."""
        if self.limit is None:
            return []
        self._track(driver, launcher, now)
        out: list[Command] = []
        for index, started in list(self.first_start.items()):
            if index in self.expired or index not in launcher.running or now - started < self.limit:
                continue
            self.expired.add(index)
            attempts = launcher.running[index].number
            launcher.stop(index, grace_seconds=PRUNE_GRACE_SECONDS)
            message = f"ran past deadlineSeconds={self.limit}"
            out.extend(driver.handle(Tick(now), TrialLost(index, "DeadlineExceeded", message, attempts)))
        return out

    def seconds_to_next(self, now: float) -> float | None:
        """Seconds until the next running trial reaches the limit (None: no limit, or nothing running)."""
        if self.limit is None:
            return None
        left = [self.limit - (now - t) for i, t in self.first_start.items() if i not in self.expired]
        return max(0.0, min(left)) if left else None


def _follow_error(failed: FollowFailed, folder: Path) -> ResultsError:
    """The error that ends a run whose trial output cannot be written; what was told is kept."""
    if isinstance(failed.error, OSError):
        error = write_error(failed.path, failed.error)
    else:
        error = ResultsError(f"following {failed.attempt.rec.name} into {failed.path} failed: {failed.error!r}")
    return ResultsError(f"{error}; the results told so far are kept: resume with --resume {folder}")


def _write_results(folder: Path, summ: dict[str, Any], objective: Objective, trials: list[TrialRecord]) -> None:
    try:
        write_results(folder, summ, objective, trials)
    except OSError as exc:
        raise write_error(folder, exc) from None


def _ended(attempt: Attempt) -> AttemptEnded:
    """What a finished process tells the driver: its exit code and the result file it wrote."""
    text = None
    with contextlib.suppress(FileNotFoundError):
        text = attempt.result_file.read_text()
    return AttemptEnded(attempt.rec.index, attempt.number, attempt.proc.returncode, text)


def _carry_out(
    command: Command,
    search: Search,
    driver: Driver,
    journal: Journal,
    launcher: TrialLauncher,
    elapsed: float,
    console: Console,
) -> list[Command]:
    """One driver command, carried out on this machine; returns the driver's answer to what it produced."""
    if isinstance(command, (AskFor, Tell)):
        answer = search.serve(command)
        return driver.handle(answer) if answer is not None else []
    if isinstance(command, Create):
        journal.asked(command.trial)
        launcher.start(command.trial, 1)
        return driver.handle(AttemptStarted(command.trial.index, 1))
    if isinstance(command, Relaunch):
        launcher.start(command.trial, command.attempt)
        return driver.handle(AttemptStarted(command.trial.index, command.attempt))
    if isinstance(command, Store):
        journal.told(command.trial, elapsed)
        trial = command.trial
        if trial.phase != "Succeeded":
            detail = f": {trial.message}" if trial.message else ""
            console.print(f"{trial.name} {trial.phase.lower()} ({trial.reason or trial.phase}){detail}", markup=False)
        return driver.handle(ResultStored(trial.index))
    if isinstance(command, Cancel):
        launcher.stop(command.trial.index)
        return []
    if isinstance(command, Prune):  # its result follows as Tell and Store; its exit is ignored
        launcher.stop(command.trial.index, grace_seconds=PRUNE_GRACE_SECONDS)
        return []
    return []  # MarkRunning: the journal keeps only asks and results; Finish: the loop reads driver.finished

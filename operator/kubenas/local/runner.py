"""``kubenas run``: drive a SearchExperiment on this machine through the core engine.

The loop is the operator's loop without Kubernetes: ask the engine what to do, start trials as
subprocesses (at most ``parallelTrials`` at once), block until one exits, judge it with the same rules
as the operator (``kubenas.core.outcome``), tell the strategy, append to the journal, repeat.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kubenas.api.load import load_experiment
from kubenas.api.v1alpha1 import SearchExperiment
from kubenas.core import engine
from kubenas.core.outcome import judge
from kubenas.core.records import TrialRecord, objective_value
from kubenas.core.search import Search
from kubenas.local.journal import Journal, read_journal
from kubenas.local.process import Attempt, TrialLauncher
from kubenas.local.report import leaderboard, summary, write_results

SPEC_FILE = "experiment.yaml"


class ResumeError(RuntimeError):
    """The results folder cannot be resumed (missing, or made by another experiment)."""


@dataclass
class RunResult:
    phase: str
    reason: str
    message: str
    results: Path
    interrupted: bool = False


def prepare(experiment_file: Path | None, results: Path | None, resume: Path | None) -> tuple[SearchExperiment, Path]:
    """The experiment and its results folder, for a new run or a resumed one."""
    if resume is not None:
        spec_path = resume / SPEC_FILE
        if not spec_path.exists():
            raise ResumeError(f"{resume} holds no {SPEC_FILE}: not a Kubenas results folder")
        exp = load_experiment(spec_path)
        if experiment_file is not None:
            given = load_experiment(experiment_file)
            if given.spec != exp.spec:
                raise ResumeError(f"{experiment_file} differs from the experiment recorded in {resume}")
        return exp, resume
    if experiment_file is None:
        raise ResumeError("give an experiment file, or --resume DIR")
    exp = load_experiment(experiment_file)
    folder = results or Path("results") / exp.metadata.name
    if (folder / "journal.jsonl").exists():
        raise ResumeError(f"{folder} already holds a run: use --resume {folder}, or choose --results")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPEC_FILE).write_text(yaml.safe_dump(exp.to_wire(), sort_keys=False))
    return exp, folder


def run(exp: SearchExperiment, folder: Path, console: Console | None = None) -> RunResult:
    """Run (or continue) the experiment recorded in ``folder`` until the engine says it is finished."""
    console = console or Console()
    history, elapsed_before = read_journal(folder)
    for rec in history:  # attempts cut short by a previous stop start again from scratch
        if not rec.told:
            shutil.rmtree(folder / "trials" / rec.name, ignore_errors=True)
    search = Search(exp.spec, history, name_prefix=exp.metadata.name)
    journal = Journal(folder)
    launcher = TrialLauncher(exp, search.space, folder)
    started = time.monotonic() - elapsed_before
    retries = exp.spec.trial_template.retries
    objective = exp.spec.objective
    queued = [rec for rec in search.trials if not rec.told]  # resumed: asked before the stop, rerun now
    if history:
        console.print(
            f"Resuming {exp.metadata.name}: {sum(r.told for r in history)} results kept, {len(queued)} to rerun"
        )

    def elapsed() -> float:
        return time.monotonic() - started

    def best_text() -> str:
        best = search.best
        return (
            "best: -"
            if best is None or best.reward is None
            else f"best {objective.metric}: {objective_value(objective, best.reward):.4g}"
        )

    action: engine.Action = search.next_action(elapsed())
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
        task = progress.add_task(exp.metadata.name, total=exp.spec.budget.max_trials, best=best_text())
        progress.update(task, completed=sum(r.told for r in search.trials))
        try:
            while True:
                action = search.next_action(elapsed())
                if isinstance(action, engine.Finish):
                    break
                if isinstance(action, engine.Ask):
                    for _ in range(action.count):
                        rec = search.ask()
                        journal.asked(rec)
                        queued.append(rec)
                while queued and len(launcher.running) < exp.spec.budget.parallel_trials:
                    rec = queued.pop(0)
                    search.mark_running(rec.index)
                    launcher.start(rec, 1)
                if not launcher.running:
                    continue  # the engine will finish or ask on the next turn
                attempt = launcher.done.get()
                launcher.running.pop(attempt.rec.index, None)
                if _settle(search, journal, launcher, attempt, retries, elapsed()):
                    progress.update(task, advance=1, best=best_text())
        except KeyboardInterrupt:
            interrupted = True
            console.print("[yellow]Stopping: sending SIGTERM to running trials; resume with --resume[/]")
            launcher.stop_all()
    journal.close()
    trials = list(search.trials)
    if interrupted:
        summ = summary(exp.metadata.name, objective, trials, "Stopped", "Interrupted")
        write_results(folder, summ, objective, trials)
        return RunResult("Stopped", "Interrupted", "stopped by the user", folder, interrupted=True)
    assert isinstance(action, engine.Finish)
    summ = summary(exp.metadata.name, objective, trials, action.phase, action.reason)
    write_results(folder, summ, objective, trials)
    leaderboard(console, objective, trials)
    console.print(f"{action.phase}: {action.reason} ({action.message}). Results in {folder}")
    return RunResult(action.phase, action.reason, action.message, folder)


def _settle(
    search: Search, journal: Journal, launcher: TrialLauncher, attempt: Attempt, retries: int, elapsed: float
) -> bool:
    """Judge a finished attempt: retry it, or record its result. True when a result was recorded."""
    text = None
    with contextlib.suppress(FileNotFoundError):
        text = attempt.result_file.read_text()
    outcome = judge(attempt.proc.returncode, text, attempt.number, retries)
    if outcome.verdict == "retry":
        launcher.start(attempt.rec, attempt.number + 1)
        return False
    failed = outcome.verdict in ("bad_candidate", "failed")
    rec: TrialRecord = search.tell(attempt.rec.index, outcome.metrics, failed=failed, reason=outcome.reason)
    journal.told(rec, elapsed)
    return True

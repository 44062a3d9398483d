"""``kubenas run`` for a one-shot search (``spec.oneShot``): the three phases on this machine.

The phase to run is the core's decision (:func:`kubenas.core.oneshot.next_phase`), made from what the
results folder records, so ``kubenas run --resume`` after a kill in any phase continues there:

- ``supernet/``: phase 1, the supernet trainer's attempts (``attempt-N.log``, ``result.json``), its
  checkpoint in ``output/`` and ``record.json``, written when an attempt ends. A run killed while the
  supernet trains starts it again (the checkpoint is written only at the end of training).
- ``evaluations/journal.jsonl``: phase 2, one ask line and one tell line per candidate scored on the
  supernet: the light record of the cheap evaluations, with the same codec as Trials but no Trial
  of their own (thousands of them would drown the leaderboard and, on Kubernetes, the API server).
  The strategy is rebuilt from it by replay, as from trials. One evaluator process loads the
  supernet once and answers every candidate over a pipe (``evaluator.log`` keeps its stderr).
- ``journal.jsonl``, ``trials/``, ``summary.json``: phase 3, an ordinary run of a retrain of the top
  k (:mod:`kubenas.local.runner`), whose Trials are the experiment's results.
- ``oneshot.json``: the phases' figures: the supernet's result, the evaluations, the top k with their
  one-shot scores, and the collapse guard (operation mix and parameter-free share of the top k
  against all evaluated candidates).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from kubenas.api.settings import settings_json
from kubenas.api.v1alpha1 import SearchExperiment, SearchExperimentSpec
from kubenas.controller import paths
from kubenas.core.driver import (
    AskFor,
    AttemptEnded,
    AttemptStarted,
    Command,
    Create,
    Driver,
    Interrupted,
    Relaunch,
    ResultStored,
    Store,
    Tell,
    Tick,
)
from kubenas.core.enas import last_rewarded, policy_config
from kubenas.core.oneshot import (
    Evaluate,
    OneShotFailed,
    Retrain,
    SupernetRecord,
    TrainSupernet,
    next_phase,
    phase_name,
    supernet_outcome,
)
from kubenas.core.records import TrialRecord
from kubenas.core.retrain import top_architectures
from kubenas.insights.collapse import operation_mix
from kubenas.local.controller import LoopbackController
from kubenas.local.errors import write_error
from kubenas.local.journal import JOURNAL, Journal, read_journal
from kubenas.local.lock import hold, release
from kubenas.local.process import stop_processes
from kubenas.local.report import summary, write_results
from kubenas.local.runner import RunResult, replayed
from kubenas.local.runner import run as run_trials

SUPERNET_DIR = "supernet"
EVALUATIONS_DIR = "evaluations"
RECORD_FILE = "record.json"
FIGURES_FILE = "oneshot.json"
#: the ENAS supernet trainer's record of paths and rewards, beside its checkpoint
PATHS_RECORD = "paths.jsonl"


def read_supernet(folder: Path) -> SupernetRecord:
    path = folder / SUPERNET_DIR / RECORD_FILE
    if not path.is_file():
        return SupernetRecord()
    data = json.loads(path.read_text())
    return SupernetRecord(**data)


def _write_supernet(folder: Path, record: SupernetRecord) -> None:
    path = folder / SUPERNET_DIR / RECORD_FILE
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps({**asdict(record), "metrics": dict(record.metrics)}, indent=2) + "\n")
        os.replace(tmp, path)  # a record is there whole or not at all
    except OSError as exc:
        raise write_error(path, exc) from None


def _contract_env(exp: SearchExperiment, phase: TrainSupernet, folder: Path) -> dict[str, str]:
    spec = exp.spec
    env = {e.name: e.value for e in spec.trial_template.env}
    env |= {
        "KUBENAS_SEARCH_SPACE": json.dumps(spec.search_space.to_wire()),
        "KUBENAS_SETTINGS": settings_json(dict(phase.settings)),
        "KUBENAS_SEED": str(phase.seed),
        "KUBENAS_TRIAL": f"{exp.metadata.name}-supernet",
        "KUBENAS_EXPERIMENT": exp.metadata.name,
        "KUBENAS_RESULT_FILE": str(folder / SUPERNET_DIR / "result.json"),
        "KUBENAS_OUTPUT_DIR": str(folder / SUPERNET_DIR / "output"),
    }
    return {**os.environ, **env}


def train_supernet(exp: SearchExperiment, folder: Path, phase: TrainSupernet, record: SupernetRecord) -> SupernetRecord:
    """Run one attempt of the supernet trainer and record how it ended."""
    directory = folder / SUPERNET_DIR
    directory.mkdir(parents=True, exist_ok=True)
    result_file = directory / "result.json"
    result_file.unlink(missing_ok=True)
    assert exp.spec.one_shot is not None
    env = _contract_env(exp, phase, folder)
    config = policy_config(exp.spec, phase.seed)
    with contextlib.ExitStack() as stack, (directory / f"attempt-{phase.attempt}.log").open("wb") as log:
        if config is not None:  # ENAS: the policy is the controller's app, on loopback for this attempt
            controller = stack.enter_context(LoopbackController(exp.metadata.name))
            env |= paths.trainer_env([controller.url], controller.token, env["KUBENAS_TRIAL"], config)
        proc = subprocess.Popen(
            [*exp.spec.one_shot.command, "train"],
            env=env,
            cwd=exp.spec.trial_template.working_dir or None,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            proc.wait()
        except KeyboardInterrupt:
            stop_processes([proc])  # the attempt is not recorded: a resumed run trains the supernet again
            raise
    text = result_file.read_text() if result_file.is_file() else None
    record = supernet_outcome(record, phase.attempt, proc.returncode, text, exp.spec.trial_template.retries)
    _write_supernet(folder, record)
    return record


class EvaluatorProcess:
    """The phase-2 evaluator (``<oneShot.command> evaluate``): one process, one JSON line per candidate.

    It is started on the first request and again after it died; a request it did not answer ends as
    an attempt killed (exit code None), which the trial rule retries.
    """

    def __init__(self, spec: SearchExperimentSpec, folder: Path) -> None:
        assert spec.one_shot is not None
        self.command = spec.one_shot.evaluate_command(str(folder / SUPERNET_DIR / "output"))
        self.cwd = spec.trial_template.working_dir or None
        self.log_path = folder / EVALUATIONS_DIR / "evaluator.log"
        self.proc: subprocess.Popen[str] | None = None
        self._log: IO[bytes] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self._log = self._log or self.log_path.open("ab")
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                text=True,
                start_new_session=True,
            )
        return self.proc

    def evaluate(self, rec: TrialRecord, attempt: int) -> AttemptEnded:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"index": rec.index, "architecture": dict(rec.architecture)}) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            return AttemptEnded(rec.index, attempt, None, None)
        reply = json.loads(line)
        return AttemptEnded(rec.index, attempt, int(reply["exitCode"]), json.dumps(reply["result"]))

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stop_processes([self.proc])
        if self._log is not None:
            self._log.close()


def evaluate(exp: SearchExperiment, folder: Path, spec: SearchExperimentSpec, console: Console) -> list[TrialRecord]:
    """Phase 2: the ordinary driver over the evaluations, each carried out by the evaluator process."""
    directory = folder / EVALUATIONS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    history, _ = read_journal(directory)
    prefix = f"{exp.metadata.name}-eval"
    search = replayed(spec, history, directory / JOURNAL)
    driver = Driver(spec, history, name_prefix=prefix)
    journal = Journal(directory, prefix, search.space, spec.strategy.seed)
    evaluator = EvaluatorProcess(exp.spec, folder)
    lost = [rec.index for rec in history if not rec.told]
    pending: deque[Command] = deque(driver.handle(Tick(0.0), *(Interrupted(i) for i in lost)))
    try:
        while pending:
            command = pending.popleft()
            if isinstance(command, (AskFor, Tell)):
                answer = search.serve(command)
                pending.extend(driver.handle(answer) if answer is not None else [])
            elif isinstance(command, (Create, Relaunch)):
                attempt = 1 if isinstance(command, Create) else command.attempt
                if isinstance(command, Create):
                    journal.asked(command.trial)
                ended = evaluator.evaluate(command.trial, attempt)
                pending.extend(driver.handle(AttemptStarted(command.trial.index, attempt), ended))
            elif isinstance(command, Store):
                journal.told(command.trial, 0.0)
                if (command.trial.index + 1) % 25 == 0:
                    console.print(f"  {command.trial.index + 1} candidates evaluated", markup=False)
                pending.extend(driver.handle(ResultStored(command.trial.index)))
    finally:
        evaluator.close()
        journal.close()
    return driver.trials


def enas_policy_paths(output: Path, spec: SearchExperimentSpec) -> list[dict[str, Any]] | None:
    """ENAS only: the paths the policy drew in its last rewarded batch (what it prefers at the end of
    training), from the trainer's record ``paths.jsonl``; None without one."""
    assert spec.one_shot is not None
    enas = spec.one_shot.enas_settings()
    record = output / PATHS_RECORD
    if enas is None or not record.is_file():
        return None
    return last_rewarded([json.loads(line) for line in record.read_text().splitlines()], enas.paths_per_batch)


def write_figures(
    folder: Path, spec: SearchExperimentSpec, supernet: SupernetRecord, evaluations: list[TrialRecord]
) -> dict[str, Any]:
    """``oneshot.json``: what each phase produced, and the collapse guard on the chosen cells."""
    assert spec.one_shot is not None
    scored = [e for e in evaluations if e.phase == "Succeeded" and e.reward is not None]
    top = top_architectures(evaluations, spec.objective, spec.one_shot.top_k)  # distinct, as phase 3 retrains
    operations = [*(spec.search_space.cell.operations if spec.search_space.cell else [])]
    operations += [
        o for o in (spec.search_space.layers.operations if spec.search_space.layers else []) if o not in operations
    ]
    figures = {
        "supernet": {"metrics": dict(supernet.metrics), "attempts": supernet.attempts, "message": supernet.message},
        "evaluations": {
            "told": sum(1 for e in evaluations if e.told),
            "succeeded": len(scored),
            "failed": sum(1 for e in evaluations if e.phase == "Failed"),
        },
        "top": [
            {"evaluation": c.trial, "architecture": dict(c.architecture), spec.objective.metric: c.value} for c in top
        ],
        "collapse_guard": {
            "chosen": operation_mix([c.architecture for c in top], operations),
            "evaluated": operation_mix([e.architecture for e in scored], operations),
        },
    }
    policy = enas_policy_paths(folder / SUPERNET_DIR / "output", spec)
    if policy is not None:
        figures["collapse_guard"]["policy_last_batch"] = operation_mix(policy, operations)
    (folder / FIGURES_FILE).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def run(exp: SearchExperiment, folder: Path, console: Console | None = None) -> RunResult:
    """Run (or continue) the one-shot search recorded in ``folder`` through its three phases."""
    console = console or Console()
    taken = hold(folder)  # a no-op after prepare, which took it; phase 3's run shares it
    try:
        return _run(exp, folder, console)
    finally:
        if taken:
            release(folder)


def _run(exp: SearchExperiment, folder: Path, console: Console) -> RunResult:
    spec = exp.spec
    try:
        while True:
            supernet = read_supernet(folder)
            evaluations, _ = read_journal(folder / EVALUATIONS_DIR)
            phase = next_phase(spec, supernet, evaluations)
            if isinstance(phase, OneShotFailed):
                summ = summary(exp.metadata.name, spec.objective, [], "Failed", phase.reason)
                write_results(folder, summ, spec.objective, [])
                console.print(f"Failed: {phase.reason} ({phase.message}). Results in {folder}", markup=False)
                return RunResult("Failed", phase.reason, phase.message, folder)
            if isinstance(phase, Retrain):
                write_figures(folder, spec, supernet, evaluations)
                console.print(
                    f"phase {phase_name(phase)}: the top {spec.one_shot.top_k if spec.one_shot else 0} from scratch"
                )
                return run_trials(exp.model_copy(update={"spec": phase.spec}), folder, console)
            console.print(f"phase {phase_name(phase)}", markup=False)
            if isinstance(phase, TrainSupernet):
                record = train_supernet(exp, folder, phase, supernet)
                if record.succeeded:
                    console.print(f"  supernet trained: {json.dumps(dict(record.metrics))}", markup=False)
            elif isinstance(phase, Evaluate):
                evaluate(exp, folder, phase.spec, console)
    except KeyboardInterrupt:
        console.print("[yellow]Stopped; resume with --resume[/]")
        return RunResult("Stopped", "Interrupted", "stopped by the user", folder, interrupted=True)

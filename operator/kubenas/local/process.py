"""Running one trial as a local subprocess under the trial contract."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kubenas.api.settings import settings_json
from kubenas.api.v1alpha1 import SearchExperiment
from kubenas.core.driver import Progress
from kubenas.core.lineage import TrialOutput, start_weights
from kubenas.core.records import TrialRecord, trial_seed
from kubenas.core.space import SearchSpace
from kubenas.local.errors import write_error
from kubenas.local.gpus import ENV_VISIBLE, GpuPlan
from kubenas.local.launch import launch_of


def output_folder(results: Path, experiment: str, where: TrialOutput) -> Path:
    """The output folder of ``where`` seen from the run of ``experiment`` in ``results``: its own
    ``trials/<trial>/output``, or that of another run, whose folder is a sibling (``results/<name>``)."""
    run = results if where.experiment == experiment else results.parent / where.experiment
    return run / "trials" / where.trial / "output"


def trial_env(
    exp: SearchExperiment, space: SearchSpace, rec: TrialRecord, result_file: Path, output_dir: Path
) -> dict[str, str]:
    """The contract's environment for one trial (docs/trial-contract.md), on top of the template's env."""
    spec = exp.spec
    env = dict(launch_of(spec.trial_template).env)
    start = start_weights(spec, exp.metadata.name, rec.parents)
    if isinstance(start, TrialOutput):  # output_dir is <results>/trials/<trial>/output
        env["KUBENAS_INIT_WEIGHTS"] = str(output_folder(output_dir.parents[2], exp.metadata.name, start))
    elif start is not None:
        env["KUBENAS_INIT_WEIGHTS"] = start.path
    env.update(
        {
            "KUBENAS_ARCHITECTURE": json.dumps(rec.architecture),
            "KUBENAS_ARCHITECTURE_ID": space.canonical(rec.architecture),
            "KUBENAS_SEARCH_SPACE": json.dumps(spec.search_space.to_wire()),
            "KUBENAS_SETTINGS": settings_json(spec.trial_template.settings),
            "KUBENAS_TRIAL": rec.name,
            "KUBENAS_EXPERIMENT": exp.metadata.name,
            "KUBENAS_SEED": str(trial_seed(spec.strategy.seed, rec.index)),
            "KUBENAS_RESULT_FILE": str(result_file),
            "KUBENAS_OUTPUT_DIR": str(output_dir),
        }
    )
    return env


@dataclass
class Attempt:
    """One running attempt of a trial."""

    rec: TrialRecord
    number: int
    proc: subprocess.Popen[bytes]
    result_file: Path
    last_progress: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FollowFailed:
    """Following an attempt failed (its log could not be written: no space left on device, say).

    Reported at once, not when the process exits: the run must end now with this error, rather than
    go on with trials whose output is lost.
    """

    attempt: Attempt
    path: Path
    error: Exception


def progress_of(index: int, line: bytes) -> tuple[dict[str, Any], Progress | None]:
    """A JSON progress line of the trial contract, and the :class:`Progress` event it carries when it
    is an epoch report (``{"event": "epoch", "epoch": N, "metrics": {...}}``); ``({}, None)`` for
    anything else."""
    try:
        data = json.loads(line)
    except ValueError:
        return {}, None
    if not isinstance(data, dict):
        return {}, None
    step, metrics = data.get("epoch", data.get("step")), data.get("metrics")
    if not isinstance(step, int) or isinstance(step, bool) or not isinstance(metrics, dict):
        return data, None
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return data, Progress(index, step, numbers)


class TrialLauncher:
    """Starts trial processes and reports, on one queue, each exit and each epoch's metrics, so the
    runner blocks instead of polling."""

    def __init__(self, exp: SearchExperiment, space: SearchSpace, results: Path, gpus: GpuPlan | None = None) -> None:
        self.exp = exp
        self.gpus = gpus
        self.space = space
        self.results = results
        self.launch = launch_of(exp.spec.trial_template)  # the same for every trial: read the template once
        self.done: queue.Queue[Attempt | Progress | FollowFailed] = queue.Queue()
        self.running: dict[int, Attempt] = {}

    def start(self, rec: TrialRecord, number: int) -> Attempt:
        tdir = self.results / "trials" / rec.name
        out = tdir / "output"
        result_file = tdir / "result.json"
        log_path = tdir / f"attempt-{number}.log"
        try:
            out.mkdir(parents=True, exist_ok=True)
            result_file.unlink(missing_ok=True)
            log = self._open_log(log_path)
        except OSError as exc:
            raise write_error(tdir, exc) from None
        tpl = self.exp.spec.trial_template
        env = {**os.environ, **trial_env(self.exp, self.space, rec, result_file, out)}
        command = [*tpl.command, *self.launch.args]
        pool = self.gpus.pool if self.gpus is not None else None
        if self.gpus is not None and pool is not None:  # this attempt's own GPUs, one torchrun process each
            env[ENV_VISIBLE] = ",".join(pool.acquire((rec.index, number), self.gpus.per_trial))
            command = self.gpus.command(command)
        try:
            proc = subprocess.Popen(
                command,
                env=env,
                cwd=self.launch.working_dir or None,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the runner, which stops trials in order
            )
        except BaseException:
            log.close()
            if pool is not None:
                pool.release((rec.index, number))
            raise
        attempt = Attempt(rec, number, proc, result_file)
        self.running[rec.index] = attempt
        threading.Thread(target=self._follow, args=(attempt, log, log_path), daemon=True).start()
        return attempt

    @staticmethod
    def _open_log(path: Path) -> IO[bytes]:
        """The attempt's log file (a method of its own so that a test can stand in a full disk)."""
        return path.open("wb")

    def _follow(self, attempt: Attempt, log: IO[bytes], log_path: Path) -> None:
        """Copy the attempt's output to its log, report its epochs, then its exit.

        The exit is reported whatever happens here (the runner blocks until it is): an error is
        reported first, and the rest of the output is drained unread so that the process does not
        block on a full pipe before the runner stops it.
        """
        stdout = attempt.proc.stdout
        assert stdout is not None
        try:
            try:
                for line in stdout:
                    log.write(line)
                    if line.startswith(b"{"):
                        data, progress = progress_of(attempt.rec.index, line)
                        if data:
                            attempt.last_progress = data
                        if progress is not None:
                            self.done.put(progress)
            finally:
                log.close()  # flushes: it may fail too
        except Exception as exc:
            self.done.put(FollowFailed(attempt, log_path, exc))
            with contextlib.suppress(Exception):
                log.close()
            with contextlib.suppress(Exception):
                for _ in stdout:
                    pass
        finally:
            attempt.proc.wait()
            self._release(attempt)
            self.done.put(attempt)

    def _release(self, attempt: Attempt) -> None:
        """The attempt's GPUs go back to the pool once its process has exited."""
        if self.gpus is not None and self.gpus.pool is not None:
            self.gpus.pool.release((attempt.rec.index, attempt.number))

    def stop(self, index: int, grace_seconds: float = 10.0) -> None:
        """Stop one trial's attempt (SIGTERM, then SIGKILL after the grace period) and reap it."""
        self._stop([a for i, a in self.running.items() if i == index], grace_seconds)

    def stop_all(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM every running trial, then SIGKILL what is left after the grace period."""
        self._stop(list(self.running.values()), grace_seconds)

    def _stop(self, attempts: list[Attempt], grace_seconds: float) -> None:
        stop_processes([a.proc for a in attempts], grace_seconds)
        for a in attempts:
            self._release(a)  # now, not when the follower gets to it: the next trial may want these GPUs


def stop_processes(procs: Sequence[subprocess.Popen[Any]], grace_seconds: float = 10.0) -> None:
    """SIGTERM each process group, then SIGKILL what is left after the grace period; reap them all."""
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            proc.wait()


def _signal(proc: subprocess.Popen[Any], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)

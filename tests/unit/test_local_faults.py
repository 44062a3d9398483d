"""Local mode under faults: torn or corrupt journals, a full disk, SIGTERM, two runs on one folder,
unwritable results folders. Each ends in a clear error (exit 2) or a clean stop, never a hang, a
traceback or a trial process left running."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from kubenas.cli import app
from kubenas.local.errors import FolderInUse, JournalError, ResultsError
from kubenas.local.journal import read_journal
from kubenas.local.lock import LOCK_FILE, release
from kubenas.local.process import TrialLauncher
from kubenas.local.runner import ResumeError, prepare, run
from tests.conftest import experiment_dict, run_locally


def quiet() -> Console:
    return Console(file=io.StringIO(), force_terminal=False)


def two_trials(tmp_path: Path) -> Path:
    """A finished run of two toy trials, its lock let go as at the end of ``kubenas run``."""
    _, folder = run_locally(tmp_path, experiment_dict(budget={"maxTrials": 2, "parallelTrials": 1}))
    release(folder)
    return folder


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["run", *args], env={"COLUMNS": "80"})


def one_line(text: str) -> str:
    assert "Traceback" not in text, text
    assert len(text.strip().splitlines()) == 1, text
    return text.strip()


def test_a_torn_last_line_is_cut_off_so_the_next_event_is_kept(tmp_path: Path) -> None:
    folder = two_trials(tmp_path)
    with (folder / "journal.jsonl").open("a") as fh:
        fh.write('{"event": "tell", "ind')  # a crash in the middle of a write
    raised = tmp_path / "raised.yaml"
    raised.write_text(yaml.safe_dump(experiment_dict(budget={"maxTrials": 4, "parallelTrials": 1})))
    exp, _ = prepare(raised, None, folder)
    assert run(exp, folder, quiet()).reason == "MaxTrialsReached"
    lines = (folder / "journal.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["ask", "tell"] * 4
    trials, _ = read_journal(folder)
    assert [t.index for t in trials if t.told] == [0, 1, 2, 3]
    raised.write_text(yaml.safe_dump(experiment_dict(budget={"maxTrials": 5, "parallelTrials": 1})))
    exp, _ = prepare(raised, None, folder)  # a second resume replays the whole history
    assert run(exp, folder, quiet()).reason == "MaxTrialsReached"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("not json", "not a JSON line"),
        ("123", "not a journal event"),
        ("{}", "not a journal event"),
        ('{"event": "ask"}', "a malformed ask event"),
        ('{"event": "tell", "index": "x"}', "a malformed tell event"),
    ],
)
def test_a_line_that_is_no_event_is_an_error_naming_its_line(tmp_path: Path, line: str, says: str) -> None:
    folder = two_trials(tmp_path)
    journal = folder / "journal.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join([lines[0], line, *lines[1:]]) + "\n")
    with pytest.raises(JournalError, match=rf"journal\.jsonl:2: {says}"):
        read_journal(folder)
    out = cli("--resume", str(folder))
    assert out.exit_code == 2
    assert f"journal.jsonl:2: {says}" in one_line(out.output)


def test_a_journal_that_does_not_replay_is_one_line_and_exit_2(tmp_path: Path) -> None:
    folder = two_trials(tmp_path)
    doc = yaml.safe_load((folder / "experiment.yaml").read_text())
    doc["spec"]["strategy"]["seed"] = 2  # the strategy now proposes other candidates
    (folder / "experiment.yaml").write_text(yaml.safe_dump(doc))
    out = cli("--resume", str(folder))
    assert out.exit_code == 2
    assert "does not replay" in one_line(out.output) and "ask #0" in out.output


class FullDisk(io.RawIOBase):
    """A log file on a full disk: every write and the final flush fail with ENOSPC."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        if not self.closed:
            super().close()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_ends_the_run_with_an_error_instead_of_hanging(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment_dict(budget={"maxTrials": 2, "parallelTrials": 1})))
    exp, folder = prepare(path, tmp_path / "out", None)
    outcome: list[BaseException | object] = []

    def target() -> None:
        try:
            outcome.append(run(exp, folder, quiet()))
        except BaseException as exc:
            outcome.append(exc)

    with patch.object(TrialLauncher, "_open_log", staticmethod(lambda p: FullDisk())):
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(timeout=60)
    assert outcome, "the run hangs when a trial's log cannot be written"
    assert isinstance(outcome[0], ResultsError), outcome
    assert "no space left on device writing" in str(outcome[0]) and "attempt-1.log" in str(outcome[0])


def test_sigterm_stops_trials_and_writes_the_summary(tmp_path: Path) -> None:
    trial = tmp_path / "trial.py"
    trial.write_text(
        "import os, time\n"
        "open(os.path.join(os.environ['KUBENAS_OUTPUT_DIR'], 'pid'), 'w').write(str(os.getpid()))\n"
        "time.sleep(120)\n"
    )
    doc = experiment_dict(
        budget={"maxTrials": 4, "parallelTrials": 2}, trialTemplate={"command": [sys.executable, str(trial)]}
    )
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    folder = tmp_path / "out"
    cmd = [sys.executable, "-m", "kubenas.cli", "run", str(path), "--results", str(folder)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            files = sorted(folder.glob("trials/*/output/pid"))
            pids = [int(text) for f in files if (text := f.read_text())]
            time.sleep(0.05)
        assert len(pids) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert json.loads((folder / "summary.json").read_text())["phase"] == "Stopped"
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_folder_in_use_is_refused_and_a_stale_lock_is_not(tmp_path: Path) -> None:
    folder = two_trials(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
            "f.seek(0); f.truncate(); f.write(str(os.getpid())); f.flush()\n"
            "print('locked', flush=True); time.sleep(120)\n",
            str(folder / LOCK_FILE),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        with pytest.raises(FolderInUse, match=rf"is in use by another kubenas run \(pid {holder.pid}\)"):
            prepare(None, None, folder)
        out = cli("--resume", str(folder))
        assert out.exit_code == 2
        assert f"in use by another kubenas run (pid {holder.pid})" in one_line(out.output)
    finally:
        holder.kill()
        holder.wait()
    assert (folder / LOCK_FILE).read_text() == str(holder.pid)  # left by a dead process: no obstacle
    exp, _ = prepare(None, None, folder)
    assert run(exp, folder, quiet()).reason == "MaxTrialsReached"


@pytest.mark.parametrize("where", ["file", "below-file", "read-only"])
def test_an_unwritable_results_folder_is_one_line_and_exit_2(tmp_path: Path, where: str) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment_dict()))
    afile = tmp_path / "afile"
    afile.write_text("")
    folder = {"file": afile, "below-file": afile / "out", "read-only": tmp_path / "ro" / "out"}[where]
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder))
    with patch.object(Path, "mkdir", side_effect=read_only) if where == "read-only" else contextlib.nullcontext():
        out = cli(str(path), "--results", str(folder))
    assert out.exit_code == 2
    assert str(folder) in one_line(out.output)


def test_resume_refuses_another_results_folder(tmp_path: Path) -> None:
    folder = two_trials(tmp_path)
    with pytest.raises(ResumeError, match=r"--results .* with --resume"):
        prepare(None, tmp_path / "other", folder)


def test_an_empty_journal_beside_trial_folders_is_said(tmp_path: Path) -> None:
    folder = two_trials(tmp_path)
    (folder / "journal.jsonl").write_text("")
    exp, _ = prepare(None, None, folder)
    console = Console(file=io.StringIO(), force_terminal=False, width=400)
    run(exp, folder, console)
    assert "journal.jsonl holds no events" in console.file.getvalue()  # type: ignore[attr-defined]

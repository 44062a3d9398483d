"""Local mode: a run produces the results folder; Ctrl-C then --resume loses and repeats nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
import yaml
from rich.console import Console

from kubenas.load import parse_experiment
from kubenas.local.journal import read_journal
from kubenas.local.process import TrialLauncher
from kubenas.local.runner import ResumeError, prepare, run
from tests.conftest import experiment_dict


def write_experiment(tmp_path: Path, **overrides: object) -> Path:
    doc = experiment_dict(**overrides)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def quiet() -> Console:
    return Console(file=open(os.devnull, "w"), force_terminal=False)


def test_run_writes_summary_csv_json_and_plot(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, budget={"maxTrials": 6, "parallelTrials": 3})
    exp, folder = prepare(path, tmp_path / "out", None)
    result = run(exp, folder, quiet())
    assert (result.phase, result.reason) == ("Succeeded", "MaxTrialsReached")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["trials"] == 6
    assert set(summary["best"]) >= {"trial", "architecture", "metrics"}
    assert 0 < summary["best"]["metrics"]["val_accuracy"] < 1
    rows = json.loads((folder / "trials.json").read_text())
    assert max(r["value"] for r in rows) == summary["best"]["metrics"]["val_accuracy"]
    assert len((folder / "trials.csv").read_text().splitlines()) == 7
    assert (folder / "reward.png").stat().st_size > 1000


def test_bad_candidates_fail_without_retry_and_fail_the_experiment(tmp_path: Path) -> None:
    path = write_experiment(
        tmp_path,
        searchSpace={"hyperparameters": [{"name": "op", "type": "categorical", "choices": ["bad"]}]},
        budget={"maxTrials": 3, "parallelTrials": 1, "maxFailedTrials": 1},
        trialTemplate={
            "command": [sys.executable, "-m", "kubenas.local.toy_trial"],
            "settings": {"fail_on": "bad"},
            "retries": 3,
        },
    )
    exp, folder = prepare(path, tmp_path / "out", None)
    result = run(exp, folder, quiet())
    assert (result.phase, result.reason) == ("Failed", "TooManyFailures")
    trials, _ = read_journal(folder)
    assert [t.reason for t in trials] == ["BadCandidate", "BadCandidate"]
    assert not (folder / "trials" / trials[0].name / "attempt-2.log").exists()


def test_ctrl_c_then_resume_equals_an_unbroken_run(tmp_path: Path) -> None:
    overrides = {
        "budget": {"maxTrials": 8, "parallelTrials": 1},
        "trialTemplate": {
            "command": [sys.executable, "-m", "kubenas.local.toy_trial"],
            "settings": {"sleep_s": 1.0},
        },
    }
    path = write_experiment(tmp_path, **overrides)
    exp, unbroken = prepare(path, tmp_path / "unbroken", None)
    run(exp, unbroken, quiet())

    broken = tmp_path / "broken"
    cmd = [sys.executable, "-m", "kubenas.cli", "run", str(path), "--results", str(broken)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        told = [t for t in read_journal(broken)[0] if t.told] if broken.exists() else []
        if len(told) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    before, _ = read_journal(broken)
    assert 2 <= sum(t.told for t in before) < 8

    resumed = subprocess.run([sys.executable, "-m", "kubenas.cli", "run", "--resume", str(broken)], capture_output=True)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    after, _ = read_journal(broken)
    expected, _ = read_journal(unbroken)
    assert [t.architecture for t in after] == [t.architecture for t in expected]
    assert all(t.told for t in after) and len(after) == 8
    tells = [line for line in (broken / "journal.jsonl").read_text().splitlines() if '"tell"' in line]
    assert len(tells) == 8  # nothing told twice
    best = [json.loads((d / "summary.json").read_text())["best"] for d in (broken, unbroken)]
    assert best[0] == best[1]


def test_resume_refuses_a_different_experiment_naming_the_field(tmp_path: Path) -> None:
    path = write_experiment(tmp_path)
    exp, folder = prepare(path, tmp_path / "out", None)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(experiment_dict(strategy={"name": "random", "seed": 2})))
    with pytest.raises(ResumeError, match=r"spec\.strategy\.seed"):
        prepare(other, None, folder)
    assert parse_experiment(yaml.safe_load(path.read_text())).spec == exp.spec


def test_resume_after_raising_max_trials_continues(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, budget={"maxTrials": 3, "parallelTrials": 1})
    exp, folder = prepare(path, tmp_path / "out", None)
    run(exp, folder, quiet())
    raised = tmp_path / "raised.yaml"
    raised.write_text(yaml.safe_dump(experiment_dict(budget={"maxTrials": 5, "parallelTrials": 2})))
    exp, same = prepare(raised, None, folder)
    assert same == folder and exp.spec.budget.max_trials == 5
    assert run(exp, folder, quiet()).reason == "MaxTrialsReached"
    trials, _ = read_journal(folder)
    assert [t.index for t in trials] == [0, 1, 2, 3, 4] and all(t.told for t in trials)


def test_a_missing_trial_command_is_one_clear_error(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, trialTemplate={"command": ["no-such-trainer-here"]})
    with pytest.raises(ResumeError, match=r"spec.trialTemplate.command: 'no-such-trainer-here'"):
        prepare(path, tmp_path / "out", None)


def test_a_configuration_error_is_not_retried_and_its_message_is_kept(tmp_path: Path) -> None:
    script = tmp_path / "refuse.py"
    script.write_text(
        "import json, os, sys\n"
        "open(os.environ['KUBENAS_RESULT_FILE'], 'w').write(json.dumps({'message': 'unknown setting: lr_x'}))\n"
        "sys.exit(2)\n"
    )
    path = write_experiment(
        tmp_path,
        budget={"maxTrials": 2, "parallelTrials": 1},
        trialTemplate={"command": [sys.executable, str(script)], "retries": 3},
    )
    exp, folder = prepare(path, tmp_path / "out", None)
    assert run(exp, folder, quiet()).reason == "NoTrialSucceeded"
    trials, _ = read_journal(folder)
    assert {(t.reason, t.message, t.attempts) for t in trials} == {("ConfigurationError", "unknown setting: lr_x", 1)}
    assert "unknown setting: lr_x" in (folder / "trials.csv").read_text()
    rows = json.loads((folder / "trials.json").read_text())
    assert {r["message"] for r in rows} == {"unknown setting: lr_x"}


def test_no_trial_process_outlives_a_run_that_ends_early(tmp_path: Path) -> None:
    """The goal is reached while slow trials still run: they are stopped and reaped with the run."""
    path = write_experiment(
        tmp_path,
        objective={"metric": "val_accuracy", "target": 0.0},
        budget={"maxTrials": 6, "parallelTrials": 3},
        trialTemplate={
            "command": [sys.executable, "-m", "kubenas.local.toy_trial"],
            "settings": {"sleep_s": 0},
        },
    )
    exp, folder = prepare(path, tmp_path / "out", None)
    slow = exp.spec.trial_template.model_copy(update={"settings": {"sleep_s": 60}})
    launched: list[subprocess.Popen[bytes]] = []
    original = TrialLauncher.start

    def start(self: TrialLauncher, rec: Any, number: int) -> Any:
        # the first trial finishes at once and reaches the goal; the others would sleep a minute
        if rec.index > 0:
            self.exp = exp.model_copy(update={"spec": exp.spec.model_copy(update={"trial_template": slow})})
        attempt = original(self, rec, number)
        self.exp = exp
        launched.append(attempt.proc)
        return attempt

    with patch.object(TrialLauncher, "start", start):
        result = run(exp, folder, quiet())
    assert result.reason == "GoalReached"
    assert len(launched) == 3 and all(p.poll() is not None for p in launched)
    cancelled = [t for t in read_journal(folder)[0] if not t.told]
    assert len(cancelled) == 2


def test_a_torn_last_journal_line_is_ignored(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, budget={"maxTrials": 2, "parallelTrials": 1})
    exp, folder = prepare(path, tmp_path / "out", None)
    run(exp, folder, quiet())
    with (folder / "journal.jsonl").open("a") as fh:
        fh.write('{"event": "tell", "ind')
    trials, _ = read_journal(folder)
    assert len(trials) == 2 and all(t.told for t in trials)


def test_a_trial_past_deadline_seconds_is_stopped_and_given_up(tmp_path: Path) -> None:
    """deadlineSeconds holds locally as a Job's activeDeadlineSeconds does on a cluster: the trial is
    stopped and fails as DeadlineExceeded; nothing else waits for it (it ran on for ever)."""
    path = write_experiment(
        tmp_path,
        budget={"maxTrials": 2, "parallelTrials": 1},
        trialTemplate={
            "command": [sys.executable, "-m", "kubenas.local.toy_trial"],
            "settings": {"sleep_s": 60},
            "deadlineSeconds": 1,
        },
    )
    exp, folder = prepare(path, tmp_path / "out", None)
    started = time.monotonic()
    result = run(exp, folder, quiet())
    assert time.monotonic() - started < 30
    assert (result.phase, result.reason) == ("Failed", "NoTrialSucceeded")
    trials, _ = read_journal(folder)
    assert [(t.phase, t.reason) for t in trials] == [("Failed", "DeadlineExceeded")] * 2
    assert all("deadlineSeconds=1" in (t.message or "") for t in trials)

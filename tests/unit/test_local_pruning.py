"""Local mode: learning curves read from the trial's stdout while it runs, and pruned trials stopped."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml
from rich.console import Console

from kubenas.local.journal import read_journal
from kubenas.local.process import progress_of
from kubenas.local.runner import prepare, run
from tests.conftest import experiment_dict

EPOCHS = 8


def test_a_progress_line_becomes_a_progress_event_and_other_lines_do_not() -> None:
    data, progress = progress_of(4, b'{"event": "epoch", "epoch": 3, "metrics": {"val_accuracy": 0.9, "ok": true}}')
    assert data["epoch"] == 3 and progress is not None
    assert (progress.index, progress.step, dict(progress.metrics)) == (4, 3, {"val_accuracy": 0.9})
    assert progress_of(4, b'{"event": "log", "message": "hi"}')[1] is None
    assert progress_of(4, b"{not json") == ({}, None)


def test_the_median_rule_stops_trials_mid_training_and_the_folder_shows_every_curve(tmp_path: Path) -> None:
    doc = experiment_dict(
        budget={"maxTrials": 8, "parallelTrials": 1},
        strategy={"name": "random", "seed": 3},
        trialTemplate={
            "command": [sys.executable, "-m", "kubenas.local.toy_trial"],
            "settings": {"epochs": EPOCHS, "epoch_s": 0.1},
        },
    )
    doc["spec"]["earlyStopping"] = {"rule": "median", "startupTrials": 2}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    exp, folder = prepare(path, tmp_path / "out", None)
    with open(os.devnull, "w") as sink:
        result = run(exp, folder, Console(file=sink))
    assert (result.phase, result.reason) == ("Succeeded", "MaxTrialsReached")

    summary = json.loads((folder / "summary.json").read_text())
    rows = {r["trial"]: r for r in json.loads((folder / "trials.json").read_text())}
    pruned = [r for r in rows.values() if r["phase"] == "Pruned"]
    assert summary["pruned"] == len(pruned) >= 1
    for row in rows.values():
        assert [step for step, _ in row["curve"]] == list(range(1, len(row["curve"]) + 1))
        assert len(row["curve"]) == (EPOCHS if row["phase"] == "Succeeded" else len(row["curve"]))
    for row in pruned:
        # stopped mid-training: its process never reported the last epochs, its partial result is kept
        assert len(row["curve"]) < EPOCHS and row["reason"] == "EarlyStopped"
        assert row["value"] == row["curve"][-1][1] == row["metrics"]["val_accuracy"]
        log = (folder / "trials" / row["trial"] / "attempt-1.log").read_text()
        assert f'"epoch": {EPOCHS},' not in log
    assert (folder / "curves.png").stat().st_size > 1000

    # the journal keeps the curves, so a resumed run's driver judges the same
    history, _ = read_journal(folder)
    assert {t.name: [list(p) for p in t.curve] for t in history} == {n: r["curve"] for n, r in rows.items()}

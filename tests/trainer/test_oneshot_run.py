"""A one-shot search run locally with the real trainer: the three phases, and a kill in the search phase.

The runner is killed (SIGKILL) once a few candidates have been scored on the supernet; ``--resume``
must go on from the record: the supernet is not trained again, the evaluations replay exactly (the
strategy is rebuilt by replay, which checks every re-asked architecture), each recorded score is
what the evaluator gives for that candidate, and the top 2 are retrained as ordinary trials.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from kubenas.core.oneshot import evaluation_spec
from kubenas.core.search import Search
from kubenas.load import load_experiment
from kubenas.local.journal import read_journal
from kubenas_trainer.oneshot import Evaluator

OPERATIONS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"]
SETTINGS = {
    "dataset": "synthetic",
    "syntheticSamples": 200,
    "syntheticChannels": 1,
    "imageSize": 6,
    "width": 4,
    "stages": 2,
    "cellsPerStage": 1,
    "epochs": 1,
    "threads": 1,
    "latencyRuns": 1,
}


def manifest(path: Path) -> Path:
    doc = {
        "apiVersion": "kubenas.io/v1alpha1",
        "kind": "SearchExperiment",
        "metadata": {"name": "tiny-oneshot"},
        "spec": {
            "searchSpace": {
                "cell": {"nodes": 3, "operations": ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"]}
            },
            "strategy": {"name": "evolution", "seed": 1, "evolution": {"populationSize": 4, "sampleSize": 2}},
            "objective": {"metric": "val_accuracy"},
            "oneShot": {
                "evaluations": 10,
                "evaluators": 2,  # two candidates proposed at a time: a kill finds one in flight
                "topK": 2,
                "recalibrationBatches": 2,
                "supernetSettings": {"epochs": 2},
                "command": [sys.executable, "-m", "kubenas_trainer.oneshot"],
            },
            "budget": {"maxTrials": 2, "parallelTrials": 2},
            "trialTemplate": {"command": [sys.executable, "-m", "kubenas_trainer.main"], "settings": SETTINGS},
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kubenas.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def tells(journal: Path) -> int:
    if not journal.is_file():
        return 0
    return sum(1 for line in journal.read_text().splitlines() if '"event": "tell"' in line)


def test_the_three_phases_survive_a_kill_in_the_search_phase(tmp_path: Path) -> None:
    results = tmp_path / "results"
    first = cli("run", str(manifest(tmp_path / "tiny.yaml")), "--results", str(results))
    journal = results / "evaluations" / "journal.jsonl"
    deadline = time.monotonic() + 600
    while tells(journal) < 3 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, first.stderr.read() if first.stderr else ""
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = tells(journal)
    assert 3 <= killed_at < 10

    resumed = cli("run", "--resume", str(results))
    _, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err.decode()

    record = json.loads((results / "supernet" / "record.json").read_text())
    assert record["succeeded"] and record["attempts"] == 1  # the supernet was not trained again
    exp = load_experiment(results / "experiment.yaml")
    evaluations, _ = read_journal(results / "evaluations")
    assert [e.index for e in evaluations] == list(range(10)) and all(e.told for e in evaluations)
    Search(evaluation_spec(exp.spec), evaluations)  # replays every ask and tell: raises on any mismatch
    evaluator = Evaluator(
        results / "supernet" / "output", recalibration_batches=2, finetune_steps=exp.spec.one_shot.finetune_steps
    )
    for e in evaluations:
        if e.phase == "Succeeded":
            assert abs(evaluator.evaluate(e.architecture)["val_accuracy"] - e.reward) < 1e-5

    trials, _ = read_journal(results)
    ranked = sorted((e for e in evaluations if e.phase == "Succeeded"), key=lambda e: (-(e.reward or 0), e.index))
    distinct = list({json.dumps(dict(e.architecture), sort_keys=True): e for e in ranked}.values())
    assert [dict(t.architecture) for t in trials] == [dict(e.architecture) for e in distinct[:2]]
    assert all(t.phase == "Succeeded" for t in trials)
    figures = json.loads((results / "oneshot.json").read_text())
    assert figures["evaluations"]["told"] == 10 and len(figures["top"]) == 2
    assert 0 <= figures["collapse_guard"]["chosen"]["parameter_free"] <= 1
    assert json.loads((results / "summary.json").read_text())["phase"] == "Succeeded"

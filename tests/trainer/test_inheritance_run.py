"""A local evolution with ``inheritWeights``: every child starts from its parent's trained weights."""

from __future__ import annotations

import sys
from pathlib import Path

from kubenas.local.journal import read_journal
from tests.conftest import experiment_dict, run_locally

from .conftest import TINY


def test_children_of_a_local_evolution_start_from_their_parents(tmp_path: Path) -> None:
    doc = experiment_dict(
        strategy={"name": "evolution", "seed": 4, "evolution": {"populationSize": 2, "sampleSize": 2}},
        budget={"maxTrials": 3, "parallelTrials": 1},
        trialTemplate={
            "command": [sys.executable, "-m", "kubenas_trainer.main"],
            "settings": {**TINY, "dataset": "digits", "epochs": 1},
            "inheritWeights": True,
        },
    )
    result, folder = run_locally(tmp_path, doc, out="results/t")
    assert result.phase == "Succeeded", result.message
    trials, _ = read_journal(folder)
    children = [t for t in trials if t.parents]
    assert [t.index for t in children] == [2]  # population 2: the first two are random
    for t in trials:
        log = (folder / "trials" / t.name / "attempt-1.log").read_text()
        if t.parents:
            parent = trials[t.parents[0]].name
            assert f"warm start from {folder / 'trials' / parent / 'output'}" in log
            assert t.metrics["inherited_fraction"] > 0.5, t.metrics
        else:
            assert "warm start" not in log and "inherited_fraction" not in t.metrics

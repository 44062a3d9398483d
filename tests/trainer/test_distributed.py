"""Data-parallel trials under torchrun: two gloo processes on CPU train like one and report like one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubenas_trainer.distributed import World
from kubenas_trainer.errors import ContractError

from .conftest import TINY, contract_env

#: enough epochs on digits for both runs to be well past chance; the tolerance covers the different
#: shuffles and per-process batch norm statistics of two processes against one
SETTINGS = {"dataset": "digits", "epochs": 4}
TOLERANCE = 0.05


def _trainer(tmp_path: Path, processes: int) -> tuple[dict, list[dict], Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBENAS_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    env |= contract_env(tmp_path, settings=SETTINGS, output=True)
    trainer = [sys.executable, "-m", "kubenas_trainer.main"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
        trainer = [*launcher, "--nproc-per-node", str(processes), "--no-python", *trainer]
    proc = subprocess.run(trainer, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads((tmp_path / "result.json").read_text()), events, tmp_path / "out"


def test_two_processes_train_like_one_and_report_once(tmp_path: Path) -> None:
    one, one_events, one_out = _trainer(tmp_path / "one", 1)
    two, two_events, two_out = _trainer(tmp_path / "two", 2)
    assert one["status"] == two["status"] == "completed"
    assert set(one) == set(two)  # the same result, in form, as one process
    assert one["val_accuracy"] > 0.8 and two["val_accuracy"] > 0.8
    assert abs(one["val_accuracy"] - two["val_accuracy"]) <= TOLERANCE, (one, two)
    assert two["steps"] == one["steps"]  # the global batch is split over the ranks, not doubled
    assert "on 2 x cpu" in two["message"]
    # only rank 0 reports: one start, one line per epoch, one final
    assert [e["event"] for e in two_events] == [e["event"] for e in one_events]
    assert [e["event"] for e in two_events].count("epoch") == SETTINGS["epochs"]
    assert sorted(p.name for p in two_out.iterdir()) == sorted(p.name for p in one_out.iterdir())
    saved = json.loads((two_out / "architecture.json").read_text())
    assert saved["result"]["val_accuracy"] == two["val_accuracy"]


def test_world_comes_from_torchrun_variables() -> None:
    assert World.from_env({}) == World(0, 0, 1) and not World.from_env({}).distributed
    world = World.from_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert world.distributed and not world.main and world.local_rank == 1
    with pytest.raises(ContractError, match="WORLD_SIZE"):
        World.from_env({"WORLD_SIZE": "two"})
    with pytest.raises(ContractError, match="rank 2 of world size 2"):
        World.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_local_mode_runs_a_two_gpu_trial_under_torchrun(tmp_path: Path, monkeypatch) -> None:
    """``kubenas run`` with ``nvidia.com/gpu: 2`` per trial on a machine faked to hold two: one trial,
    two torchrun processes (gloo, since no GPU is really there), one result."""

    from kubenas.local.gpus import ENV_GPU_COUNT
    from kubenas.local.journal import read_journal
    from tests.conftest import experiment_dict, run_locally

    doc = experiment_dict(
        budget={"maxTrials": 1, "parallelTrials": 1},
        trialTemplate={
            "command": [sys.executable, "-m", "kubenas_trainer.main"],
            "settings": {**TINY, "epochs": 2},
            "resources": {"limits": {"nvidia.com/gpu": 2}},
        },
    )
    monkeypatch.setenv(ENV_GPU_COUNT, "2")
    result, folder = run_locally(tmp_path, doc)
    (trial,) = read_journal(folder)[0]
    log = next(folder.glob("trials/*/attempt-1.log")).read_text()
    assert result.phase == "Succeeded", log[-3000:]
    assert trial.phase == "Succeeded" and "on 2 x cpu" in (trial.message or "")
    assert log.count('"event": "final"') == 1  # two processes, one report

"""``kubenas export`` from a local results folder: the best trial's files, and a loader that works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kubenas.export import ExportError, export, from_results
from kubenas_trainer import main as trainer_main
from kubenas_trainer.outputs import load_model

from .conftest import RESNET_LIKE, contract_env

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A results folder whose best trial trained for one epoch and kept its outputs where local mode keeps them."""
    folder = tmp_path / "results"
    trial = folder / "trials" / "t-00000"
    trial.mkdir(parents=True)
    env = contract_env(trial, settings={"epochs": 1})
    env["KUBENAS_OUTPUT_DIR"] = str(trial / "output")
    for key in [k for k in os.environ if k.startswith("KUBENAS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert trainer_main.main([]) == 0
    best = {"trial": "t-00000", "artifacts": "trials/t-00000/output", "architecture": RESNET_LIKE}
    (folder / "summary.json").write_text(json.dumps({"experiment": "t", "best": best}))
    return folder


def test_export_writes_weights_that_load_into_the_rebuilt_network(results: Path, tmp_path: Path) -> None:
    to = tmp_path / "exported"
    written = export(from_results(results), to)
    assert {p.name for p in written} == {
        "model.pt",
        "architecture.json",
        "metrics.jsonl",
        "load_model.py",
        "architecture.png",
    }
    assert (to / "architecture.png").stat().st_size > 2000  # the best architecture, drawn
    model = load_model(to)
    state = torch.load(to / "model.pt", weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    described = json.loads((to / "architecture.json").read_text())
    assert described["genotype"] in (to / "load_model.py").read_text()
    x = torch.zeros(1, *described["input"]["shape"])
    assert model(x).shape == (1, described["input"]["classes"])


def test_the_written_loader_runs(results: Path, tmp_path: Path) -> None:
    to = tmp_path / "exported"
    export(from_results(results), to)
    out = subprocess.run([sys.executable, str(to / "load_model.py")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "torch.Size([1, 10])"  # digits: ten classes


def test_export_refuses_a_folder_without_a_best_trial(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"experiment": "t", "best": None}))
    with pytest.raises(ExportError, match="no best trial"):
        from_results(tmp_path)
    with pytest.raises(ExportError, match=r"summary\.json"):
        from_results(tmp_path / "nothing")

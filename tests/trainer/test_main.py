"""The trainer end to end through the trial contract: result file, exit codes, outputs, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kubenas_trainer import main as trainer_main
from kubenas_trainer.candidate import Candidate
from kubenas_trainer.errors import EXIT_BAD_CANDIDATE, EXIT_CONFIG
from kubenas_trainer.model import MacroConfig, Network, build_network
from kubenas_trainer.outputs import ARCHITECTURE_FILE, METRICS_FILE, WEIGHTS_FILE
from kubenas_trainer.report import MAX_RESULT_BYTES, Reporter, result_object

from .conftest import RESNET_LIKE, contract_env

DOCUMENTED = ("val_accuracy", "val_loss", "train_seconds", "params", "flops", "latency_ms", "status")
pytestmark = pytest.mark.usefixtures("keep_signal_handlers")


def _run(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> int:
    for key in [k for k in os.environ if k.startswith("KUBENAS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return trainer_main.main([])


def _events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_result_file_has_the_documented_fields(tmp_path: Path, monkeypatch, capsys) -> None:
    assert _run(monkeypatch, contract_env(tmp_path, settings={"epochs": 2}, output=True)) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert all(key in result for key in DOCUMENTED)
    assert result["status"] == "completed" and 0.0 <= result["val_accuracy"] <= 1.0
    assert result["params"] > 0 and result["flops"] > 0 and result["latency_ms"] > 0
    assert len((tmp_path / "result.json").read_bytes()) < MAX_RESULT_BYTES
    events = _events(capsys.readouterr().out)
    assert [e["event"] for e in events] == ["start", "epoch", "epoch", "final"]
    assert "val_accuracy" in events[1]["metrics"]
    saved = json.loads((tmp_path / "out" / ARCHITECTURE_FILE).read_text())
    assert saved["architecture"] == RESNET_LIKE and saved["result"]["val_accuracy"] == result["val_accuracy"]
    assert saved["genotype"].startswith("|") and "~0|" in saved["genotype"]  # the cell's NAS-Bench-201 string
    curve = [json.loads(line) for line in (tmp_path / "out" / METRICS_FILE).read_text().splitlines()]
    assert [c["epoch"] for c in curve] == [e["epoch"] for e in events if e["event"] == "epoch"]
    assert curve[-1]["val_accuracy"] == pytest.approx(events[2]["metrics"]["val_accuracy"], abs=1e-5)
    state = torch.load(tmp_path / "out" / WEIGHTS_FILE, weights_only=True)
    assert any(k.startswith("features.") for k in state)


def test_same_seed_gives_the_same_metrics(tmp_path: Path, monkeypatch) -> None:
    results = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        assert _run(monkeypatch, contract_env(folder, settings={"epochs": 1}, seed=3)) == 0
        results.append(json.loads((folder / "result.json").read_text()))
    same = ("val_accuracy", "val_loss", "train_loss", "params", "flops")
    assert [results[0][k] for k in same] == [results[1][k] for k in same]


def test_no_path_is_a_bad_candidate_exit_3(tmp_path: Path, monkeypatch, capsys) -> None:
    arch = {k: "none" for k in RESNET_LIKE}
    assert _run(monkeypatch, contract_env(tmp_path, architecture=arch)) == EXIT_BAD_CANDIDATE == 3
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "bad_candidate" and "no path" in result["message"]
    assert "start" not in [e["event"] for e in _events(capsys.readouterr().out)]  # refused before training


def test_out_of_memory_is_a_bad_candidate(tmp_path: Path, monkeypatch) -> None:
    def exhausted(self: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")

    monkeypatch.setattr(trainer_main.Trainer, "fit", exhausted)
    assert _run(monkeypatch, contract_env(tmp_path)) == EXIT_BAD_CANDIDATE
    assert "out of memory" in json.loads((tmp_path / "result.json").read_text())["message"]


def test_bad_settings_exit_2_naming_the_field(tmp_path: Path, monkeypatch, capsys) -> None:
    assert _run(monkeypatch, contract_env(tmp_path, settings={"dataset": "imagenet"})) == EXIT_CONFIG
    assert "settings.dataset" in capsys.readouterr().err
    written = json.loads((tmp_path / "result.json").read_text())
    assert list(written) == ["message"] and written["message"].startswith("settings.dataset: unknown dataset")


def test_time_budget_reports_partial_metrics(tmp_path: Path, monkeypatch) -> None:
    env = contract_env(tmp_path, settings={"epochs": 10000, "time_budget_s": 1.0})
    started = time.monotonic()
    assert _run(monkeypatch, env) == 0
    assert time.monotonic() - started < 30
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "partial" and "time budget" in result["message"]
    assert result["epochs"] < 10000 and "val_accuracy" in result


def test_sigterm_writes_partial_metrics_and_exits_0(tmp_path: Path) -> None:
    env = {**os.environ, **contract_env(tmp_path, settings={"epochs": 100000}), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "kubenas_trainer.main"], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"event": "epoch"' in line:
            break
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - signalled < 10
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "partial" and "signal" in result["message"]
    assert 0.0 <= result["val_accuracy"] <= 1.0 and result["epochs"] >= 1


def test_result_object_stays_small_and_valid() -> None:
    body = result_object({"a": float("nan"), "b": 1.0, "c": "text", "d": True}, "partial", "x" * 10_000)
    assert "a" not in body and "c" not in body and "d" not in body and body["b"] == 1.0
    assert len(json.dumps(body)) <= MAX_RESULT_BYTES
    many = result_object({f"m{i}": float(i) for i in range(1000)}, "completed", None)
    assert len(json.dumps(many)) <= MAX_RESULT_BYTES and many["status"] == "completed"
    with pytest.raises(ValueError):
        result_object({}, "done", None)


def test_final_is_written_once(tmp_path: Path) -> None:
    reporter = Reporter(tmp_path / "r.json", stream=open(os.devnull, "w"))  # noqa: SIM115
    assert reporter.final({"v": 1.0}) and not reporter.final({"v": 2.0})
    assert json.loads((tmp_path / "r.json").read_text())["v"] == 1.0


def test_a_batch_of_one_on_a_table_exits_2_naming_the_setting(tmp_path: Path, monkeypatch, capsys) -> None:
    env = contract_env(tmp_path, settings={"dataset": "iris", "batchSize": 1})
    assert _run(monkeypatch, env) == EXIT_CONFIG
    assert "settings.batchSize" in capsys.readouterr().err
    assert json.loads((tmp_path / "result.json").read_text())["message"].startswith("settings.batchSize:")


def test_a_seed_out_of_range_exits_2_naming_it(tmp_path: Path, monkeypatch, capsys) -> None:
    env = {**contract_env(tmp_path), "KUBENAS_SEED": str(2**64 - 1)}
    assert _run(monkeypatch, env) == EXIT_CONFIG
    assert "KUBENAS_SEED" in capsys.readouterr().err


def test_a_diverged_trial_says_so_and_keeps_its_finite_metrics(tmp_path: Path, monkeypatch) -> None:
    def diverging(candidate: Candidate, macro: MacroConfig) -> Network:
        network = build_network(candidate, macro)
        with torch.no_grad():
            network.head[-1].bias.fill_(float("inf"))  # every logit infinite: the loss is NaN from the first step
        return network

    monkeypatch.setattr(trainer_main, "build_network", diverging)
    assert _run(monkeypatch, contract_env(tmp_path, settings={"epochs": 3})) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "diverged" and "diverged" in result["message"]
    assert "val_loss" not in result and 0.0 <= result["val_accuracy"] <= 1.0 and result["epochs"] == 1


def test_hyperparameters_the_trainer_does_not_use_are_named_in_the_result(tmp_path: Path, monkeypatch) -> None:
    """A searched decision no setting reads (``learning_rate`` for ``lr``) does nothing: the result's
    message says so, where a trial's status shows it, not only in the trial's log."""
    architecture = {**RESNET_LIKE, "learning_rate": 0.1, "lr": 0.05}
    assert _run(monkeypatch, contract_env(tmp_path, architecture=architecture)) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["message"].endswith("; hyperparameters not used by this trainer: learning_rate")


def test_python_m_train_says_where_the_entry_point_is(tmp_path: Path) -> None:
    """``python -m kubenas_trainer.train`` (the loop's module) fails naming the entry point, never a
    silent success; ``python -m kubenas_trainer.main`` runs a trial as ``kubenas-trainer`` does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBENAS_")}
    loop = subprocess.run(
        [sys.executable, "-m", "kubenas_trainer.train"], env=env, capture_output=True, text=True, timeout=120
    )
    assert loop.returncode != 0 and "kubenas-trainer" in loop.stderr
    done = subprocess.run(
        [sys.executable, "-m", "kubenas_trainer.main"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == EXIT_CONFIG and "KUBENAS_ARCHITECTURE" in done.stderr  # it read the contract

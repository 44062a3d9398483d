"""The one-shot benchmark's figures: rank correlations with a bootstrap interval, the collapse guard, goals;
its options reach the configuration, and stand-alone trainings are cached across runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kubenas.bench import oneshot as bench
from kubenas.bench.oneshot import Config, Lab, Run, rank_figures, verdict
from kubenas.cli import app
from kubenas.insights.collapse import operation_mix

OPS = ("none", "skip_connect", "nor_conv_3x3")


def test_a_perfect_ranking_and_a_reversed_one() -> None:
    truth = [0.1 * i for i in range(12)]
    figures = rank_figures(truth, truth, truth, truth, [-t for t in truth], resamples=200, seed=0)
    assert figures["kendall_tau"] == 1.0 and figures["spearman"] == 1.0 and figures["tau_ci"] == [1.0, 1.0]
    assert figures["tau_params"] == -1.0 and figures["tau_seed_ceiling"] == 1.0


def test_the_interval_holds_the_estimate_and_is_reproducible() -> None:
    truth = [0.50, 0.61, 0.55, 0.72, 0.68, 0.80, 0.77, 0.90, 0.41, 0.66]
    scores = [0.30, 0.35, 0.45, 0.40, 0.52, 0.50, 0.62, 0.58, 0.20, 0.33]
    first = rank_figures(scores, truth, truth, truth, truth, resamples=300, seed=1)
    low, high = first["tau_ci"]
    assert low <= first["kendall_tau"] <= high and low < high
    assert rank_figures(scores, truth, truth, truth, truth, resamples=300, seed=1) == first


def test_the_operation_mix_counts_structural_decisions_only() -> None:
    archs = [
        {"edge_1_0": "nor_conv_3x3", "edge_2_0": "skip_connect", "edge_2_1": "none", "lr": 0.1},
        {"edge_1_0": "nor_conv_3x3", "edge_2_0": "nor_conv_3x3", "edge_2_1": "skip_connect"},
    ]
    mix = operation_mix(archs, OPS)
    assert mix["operations"] == {"none": round(1 / 6, 4), "skip_connect": round(2 / 6, 4), "nor_conv_3x3": 0.5}
    assert mix["parameter_free"] == 0.5 and mix["architectures"] == 2
    assert operation_mix([], OPS)["parameter_free"] == 0.0


def test_the_verdict_says_met_or_missed_per_goal() -> None:
    figures = {
        "kendall_tau": 0.5,
        "tau_ci": [0.3, 0.7],
        "tau_params": 0.2,
        "tau_seed_ceiling": 0.6,
        "oneshot_retrained": {"mean": 0.90, "std": 0.02},
        "multitrial_best": {"mean": 0.93, "std": 0.01},
        "cost_ratio": 12.0,
    }
    lines = verdict(figures)
    assert lines[0].startswith("ranking: met") and lines[1].startswith("accuracy: missed")
    assert lines[2].startswith("cost: met")
    figures["tau_ci"] = [0.1, 0.7]
    assert verdict(figures)[0].startswith("ranking: missed")


def _figures() -> dict[str, Any]:
    found = {
        "kendall_tau": 0.1,
        "tau_ci": [0.0, 0.2],
        "spearman": 0.1,
        "tau_params": 0.5,
        "tau_seed_ceiling": 0.4,
        "cost_ratio": 3.0,
        "oneshot_retrained": {"mean": 0.9, "std": 0.0},
        "multitrial_best": {"mean": 0.95, "std": 0.01},
        "collapse_guard": {},
        "cpu_seconds": {},
    }
    return found | {"by_sampling": {"uniform": dict(found)}}


def test_the_command_passes_dataset_scoring_and_cache_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake(config: Config, workdir: Path, log: Any = None, cache: Path | None = None) -> dict[str, Any]:
        seen.update(config=config, cache=cache)
        return _figures()

    monkeypatch.setattr(bench, "benchmark", fake)
    args = ["bench", "oneshot", "--dataset", "shapes", "--score", "loss", "--finetune-steps", "20"]
    args += ["--supernet-lr", "0.05", "--recalibration-batches", "8", "--cache", str(tmp_path / "c.json")]
    out = CliRunner().invoke(app, [*args, "--json", str(tmp_path / "out.json")])
    assert out.exit_code == 0, out.output
    config: Config = seen["config"]
    assert (config.dataset, config.score, config.finetune_steps) == ("shapes", "loss", 20)
    assert config.recalibration_batches == 8 and seen["cache"] == tmp_path / "c.json"
    settings = config.settings(config.epochs)
    assert settings["dataset"] == "shapes" and settings["image_size"] == 16 and settings["lr"] == 0.1
    assert config.supernet_settings()["lr"] == 0.05 and config.supernet_settings()["epochs"] == 12
    assert json.loads((tmp_path / "out.json").read_text())["kendall_tau"] == 0.1
    assert "ranking: missed" in out.output
    default = Config()
    assert default.settings(4)["dataset"] == "digits" and "image_size" not in default.settings(4)


@pytest.mark.parametrize("option", [["--dataset", "cifar"], ["--score", "params"]])
def test_an_unknown_dataset_or_score_is_refused(option: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "benchmark", lambda *a, **k: pytest.fail("ran with a bad option"))
    out = CliRunner().invoke(app, ["bench", "oneshot", *option])
    assert out.exit_code == 2 and option[0] in out.output


def test_trainings_are_cached_across_runs_by_settings_architecture_and_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained: list[tuple[str, int]] = []

    def train(self: Lab, arch: dict[str, str], seed: int) -> Run | None:
        trained.append((arch["edge_1_0"], seed))
        return None if arch["edge_1_0"] == "none" else Run(0.5 + seed / 10, 1.5, 42, 0.7)

    monkeypatch.setattr(Lab, "_train", train)
    cache = tmp_path / "cache.json"
    conv, cut = {"edge_1_0": "nor_conv_3x3"}, {"edge_1_0": "none"}
    first = Lab(Config(), cache)
    assert first.standalone(conv, 1) == Run(0.6, 1.5, 42, 0.7) and first.standalone(cut, 0) is None
    second = Lab(Config(), cache)  # a later run: both answers from the file, the CPU seconds as measured
    assert second.standalone(conv, 1) == Run(0.6, 1.5, 42, 0.7) and second.standalone(cut, 0) is None
    assert trained == [("nor_conv_3x3", 1), ("none", 0)]
    Lab(Config(), cache).standalone(conv, 0)  # another seed
    Lab(Config(epochs=5), cache).standalone(conv, 1)  # other settings
    Lab(Config(dataset="shapes"), cache).standalone(conv, 1)  # another dataset
    assert trained[2:] == [("nor_conv_3x3", 0), ("nor_conv_3x3", 1), ("nor_conv_3x3", 1)]
    Lab(Config()).standalone(conv, 1)  # no cache: trained again
    assert len(trained) == 6


def test_a_search_by_loss_prefers_the_lower_loss() -> None:
    history = [({"a": "x"}, Run(0.9, 1.0, loss=0.8)), ({"a": "y"}, Run(0.8, 1.0, loss=0.3)), ({"a": "z"}, None)]
    assert bench.best_of(history, 1)[0][0] == {"a": "x"}
    assert bench.best_of(history, 1, "loss")[0][0] == {"a": "y"}


@pytest.mark.parametrize("operations", ["none,none", "", " , ", "bogus_op", "none"])
def test_operations_that_cannot_be_benchmarked_are_a_usage_error(
    operations: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # duplicates, nothing, an unknown operation, a space with no buildable cell: refused before training
    monkeypatch.setattr(bench, "benchmark", lambda *a, **k: pytest.fail("ran with bad operations"))
    out = CliRunner().invoke(app, ["bench", "oneshot", "--operations", operations])
    assert out.exit_code == 2 and "--operations" in out.output, out.output
    assert "Traceback" not in out.output

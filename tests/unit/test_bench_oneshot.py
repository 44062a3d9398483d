"""The one-shot benchmark's figures: rank correlations with a bootstrap interval, the collapse guard, goals."""

from __future__ import annotations

from kubenas.bench.oneshot import rank_figures, verdict
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

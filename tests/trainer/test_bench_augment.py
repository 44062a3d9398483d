"""``kubenas bench augment`` on a tiny configuration: the splits, every arm, choices made on val."""

from __future__ import annotations

import numpy as np
import pytest

from kubenas.bench.augment import BenchConfig, TooFewImages, beats, run_benchmark, training_subset


def test_the_training_subset_is_balanced_and_the_proxy_set_lies_inside_it() -> None:
    labels = np.repeat(np.arange(4), 20)
    np.random.default_rng(0).shuffle(labels)
    full = training_subset(labels, 10, seed=3)
    proxy = training_subset(labels, 5, seed=3)
    assert np.bincount(labels[full]).tolist() == [10] * 4
    assert np.bincount(labels[proxy]).tolist() == [5] * 4
    assert set(proxy) <= set(full)
    assert not np.array_equal(training_subset(labels, 10, seed=4), full)
    with pytest.raises(TooFewImages):
        training_subset(labels, 21, seed=3)


def test_a_win_needs_two_standard_deviations() -> None:
    assert beats({"mean": 97.0, "std": 0.4}, {"mean": 96.1, "std": 0.2})
    assert not beats({"mean": 97.0, "std": 0.5}, {"mean": 96.1, "std": 0.2})


def test_a_tiny_benchmark_reports_every_arm_and_chooses_on_val() -> None:
    config = BenchConfig(
        seeds=2,
        train_per_class=6,
        epochs=2,
        search_per_class=3,
        search_epochs=1,
        search_trials=3,
        combine=2,
        strategy="random",
        sub_policies=2,
        ra_n=(1, 2),
        ra_m=(5,),
        image_size=16,
    )
    result = run_benchmark(config, log=lambda line: None)
    for name in ("none", "randaugment_best", "trivialaugment", "searched"):
        arm = result[name]
        assert len(arm["values"]) == 2 and 0.0 <= arm["mean"] <= 100.0 and arm["std"] >= 0.0
        assert 0.0 <= arm["train_accuracy"] <= 100.0
    grid = result["randaugment_grid"]
    chosen = max(grid.values(), key=lambda cell: cell["val"]["mean"])
    assert (result["randaugment_best"]["n"], result["randaugment_best"]["m"]) == (chosen["n"], chosen["m"])
    searched = result["searched"]
    assert searched["joined_policies"] == 2 and len(searched["policy"]) == 4  # 2 policies of 2 sub-policies
    assert searched["search_val_accuracy"] == sorted(searched["search_val_accuracy"], reverse=True)
    assert result["search_trials"] == 3
    shares = result["operation_frequencies"]["searched_policy"]
    assert abs(sum(shares.values()) - 1.0) < 1e-3 and set(shares) <= set(config.operations)
    assert result["goal_met"] == (
        result["wins"]["searched_beats_none"] and not result["wins"]["randaugment_best_beats_searched"]
    )

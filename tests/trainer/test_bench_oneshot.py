"""``kubenas bench oneshot`` end to end on a tiny configuration: every figure is there and in range."""

from __future__ import annotations

from pathlib import Path

from kubenas.bench.oneshot import Config, benchmark

KEYS = ("kendall_tau", "tau_ci", "spearman", "tau_params", "tau_seed_ceiling", "cost_ratio")


def test_a_tiny_benchmark_reports_every_figure(tmp_path: Path) -> None:
    config = Config(
        archs=5,
        epochs=1,
        supernet_epochs=1,
        width=4,
        trials=4,
        evaluations=4,
        top_k=2,
        repeats=2,
        resamples=50,
        sampling=("uniform", "enas"),
        paths_per_batch=3,
    )
    figures = benchmark(config, tmp_path)
    for key in KEYS:
        assert key in figures
    for key in ("kendall_tau", "spearman", "tau_params", "tau_seed_ceiling"):
        assert -1.0 <= figures[key] <= 1.0
    low, high = figures["tau_ci"]
    assert -1.0 <= low <= high <= 1.0
    for key in ("oneshot_retrained", "multitrial_best"):
        assert 0.0 <= figures[key]["mean"] <= 1.0 and figures[key]["std"] >= 0.0
    cpu = figures["cpu_seconds"]
    assert cpu["oneshot"] > cpu["supernet"] > 0 and cpu["multitrial"] > 0
    ratio = cpu["multitrial"] / cpu["oneshot"]  # the reported CPU seconds are rounded to 0.01
    assert abs(figures["cost_ratio"] - ratio) <= 0.05 * ratio
    guard = figures["collapse_guard"]
    assert guard["oneshot_chosen"]["architectures"] == 4  # top 2 of each of the 2 repeats
    assert abs(sum(guard["space"]["operations"].values()) - 1.0) < 1e-3
    assert figures["architectures"] == 5 and figures["space_size"] == 57
    assert (tmp_path / "supernet" / "supernet.pt").is_file()
    # the ENAS supernet: the same figures against the same ground truth and multi-trial runs
    enas = figures["by_sampling"]["enas"]
    assert set(figures["by_sampling"]) == {"uniform", "enas"}
    assert enas["multitrial_best"] == figures["multitrial_best"] and enas["tau_params"] == figures["tau_params"]
    assert -1.0 <= enas["kendall_tau"] <= 1.0 and enas["cpu_seconds"]["supernet"] > 0
    assert enas["collapse_guard"]["policy_last_batch"]["architectures"] == 3
    assert "policy_last_batch" not in figures["collapse_guard"]  # the headline is uniform's
    assert all(set(row["oneshot_by_sampling"]) == {"uniform", "enas"} for row in figures["rows"])
    assert (tmp_path / "supernet-enas" / "paths.jsonl").is_file()

"""How ``kubenas bench operator`` turns its observations into figures (the pure half of the benchmark)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from kubenas_dev.opbench.figures import (
    ZERO_COST_COMMAND,
    BenchResult,
    percentile,
    spread,
    trial_command,
    turnarounds,
    windows,
)
from kubenas_dev.opbench.run import CpuMeter, WindowMeter, memory_bytes


def test_each_end_is_paired_with_the_pod_that_took_its_slot() -> None:
    # two slots: pods created at 0 and 0; ends at 1.0 and 2.0; the next pods at 1.03 and 2.25
    ms = turnarounds([2.0, 1.0], [0.0, 0.0, 2.25, 1.03], parallel=2)
    assert [round(x) for x in ms] == [30, 250]


def test_percentiles_are_nearest_rank_values_that_were_measured() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_figures_per_trial_include_every_process_and_their_total() -> None:
    result = BenchResult(
        trials=100,
        parallel=5,
        turnaround_ms=[10.0, 20.0, 30.0],
        seconds=10.0,
        writes=310.0,
        passes=250.0,
        operator_cpu_s=2.0,
        cluster_cpu_s={"kube-apiserver": 5.5, "etcd": 1.0},
        benchmark_cpu_s=0.5,
        machine_cpu_s=9.0,
    )
    figures = result.to_json()
    assert figures["trials_per_s"] == 10.0
    assert figures["writes_per_trial"] == 3.1 and figures["reconciles_per_trial"] == 2.5
    assert figures["turnaround_ms"] == {"p50": 20.0, "p99": 30.0}
    assert figures["operator_cpu_ms_per_trial"] == 20.0
    cpu = figures["cpu_ms_per_trial"]
    assert list(cpu) == ["kube-apiserver", "operator", "etcd", "total"]  # largest first
    assert cpu == {"kube-apiserver": 55.0, "operator": 20.0, "etcd": 10.0, "total": 85.0}
    assert figures["benchmark_cpu_ms_per_trial"] == 5.0 and figures["machine_cpu_ms_per_trial"] == 90.0


BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def test_the_meter_counts_what_the_agent_started_alive_or_reaped() -> None:
    """A stand-in agent (this test's own child) starts two busy children: one it has reaped by the
    end, one still running. Both count under ``pods``; the agent's own time does not."""
    agent_code = (
        "import subprocess, sys, time\n"
        "sys.stdin.readline()\n"
        f"subprocess.run([sys.executable, '-c', {BURN.format(s=0.3)!r}])\n"
        f"p = subprocess.Popen([sys.executable, '-c', {BURN.format(s=0.3)!r} + 'time.sleep(30)'])\n"
        "print('ready', flush=True)\n"
        "p.wait()\n"
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", agent_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        meter = CpuMeter({"node-agent": agent.pid})
        assert agent.stdin is not None
        agent.stdin.write("go\n")
        agent.stdin.flush()
        assert agent.stdout is not None and agent.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 20
        while meter.spent()["pods"] < 0.55 and time.monotonic() < deadline:
            time.sleep(0.05)
        spent = meter.spent()
        # both children burned 0.3 s after the meter started (the interpreters' start adds a little)
        assert 0.55 <= spent["pods"] < 1.5, spent
        assert spent["node-agent"] < 0.5, spent
        assert meter.machine() >= spent["pods"] - 0.05
    finally:
        agent.kill()
        agent.wait()


def test_the_benchmark_trial_reports_a_reward_and_idles_only_when_asked(tmp_path: Path) -> None:
    assert trial_command() == ZERO_COST_COMMAND
    for seconds, seed in ((0.0, 7), (0.4, 7), (0.4, 150)):
        out = tmp_path / f"result-{seconds}-{seed}.json"
        env = {**os.environ, "KUBENAS_SEED": str(seed), "KUBENAS_RESULT_FILE": str(out)}
        started = time.monotonic()
        subprocess.run(trial_command(seconds), env=env, check=True)
        took = time.monotonic() - started
        assert json.loads(out.read_text()) == {"val_accuracy": seed * 48271 % 999983 / 1e6}
        # idles (50 + seed % 101)% of the mean: 0.228 s for seed 7, 0.396 s for seed 150 (lower bounds)
        assert took >= seconds * (50 + seed % 101) / 100


def test_cpu_windows_say_what_each_slice_of_the_history_cost() -> None:
    # 0.2 s for the first 100 trials, 0.2 s for the next 100, 0.3 s for the last 100
    marks = [(0, 0.0), (100, 0.2), (200, 0.4), (300, 0.7)]
    assert windows(marks) == [
        {"from": 0, "to": 100, "ms": 2.0},
        {"from": 100, "to": 200, "ms": 2.0},
        {"from": 200, "to": 300, "ms": 3.0},
    ]
    assert spread(marks) == 0.5  # the costliest window is 50 % above the cheapest
    assert spread([(0, 0.0), (100, 0.2)]) is None  # one window: nothing to compare
    # the window of the last trials, which start nothing after them, can be left out
    assert spread([*marks, (350, 0.75)], tail_from=300) == 0.5


def test_the_json_carries_memory_the_largest_object_and_the_windows() -> None:
    result = BenchResult(
        trials=200,
        parallel=50,
        turnaround_ms=[10.0],
        seconds=10.0,
        writes=600.0,
        operator_cpu_s=1.0,
        cpu_marks=[(0, 0.0), (100, 0.45), (200, 1.0)],
        rss_peak_bytes=150 * 2**20,
        rss_final_bytes=120 * 2**20,
        largest_bytes={"Trial": 2048, "SearchExperiment": 5120, "Secret": 3072},
        load_average=(1.5, 2.25),
    )
    figures = result.to_json()
    assert figures["operator_rss_mib"] == 150.0 and figures["operator_rss_final_mib"] == 120.0
    assert figures["largest_object_kib"] == 5.0
    assert figures["largest_object_kib_by_kind"] == {"SearchExperiment": 5.0, "Secret": 3.0, "Trial": 2.0}
    assert [w["ms"] for w in figures["operator_cpu_windows"]] == [4.5, 5.5]
    assert figures["operator_cpu_window_spread"] == 0.222
    assert figures["load_average"] == [1.5, 2.25]


def test_the_window_meter_marks_every_window_th_end_with_the_cpu_spent_since_its_start() -> None:
    meter = WindowMeter(os.getpid(), window=2)
    t = time.process_time()
    while time.process_time() - t < 0.2:
        pass
    for ends in (1, 2, 3):
        meter.on_end(ends)
    assert [ends for ends, _ in meter.marks] == [0, 2]
    assert 0.15 <= meter.marks[1][1] < 2.0


def test_memory_is_read_from_proc_peak_at_least_current() -> None:
    peak, current = memory_bytes(os.getpid())
    assert peak is not None and current is not None
    assert peak >= current > 10 * 2**20  # an interpreter with pytest loaded is over 10 MiB
    assert memory_bytes(2**22 + 1) == (None, None)  # no such process

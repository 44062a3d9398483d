"""``kubenas bench operator`` runs on the test cluster and reports its figures (no timing asserted)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from kubenas.cli import app
from kubenas_dev.cluster.pytest_plugin import wait_until
from kubenas_dev.cluster.state import child_pids
from kubenas_dev.operator_fixtures import crds

__all__ = ["crds"]


def test_the_operator_benchmark_reports_turnaround_throughput_and_writes(
    cluster: Any, crds: None, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "operator",
            "--trials",
            "20",
            "--parallel",
            "5",
            "--json",
            str(out),
            "--kubeconfig",
            str(cluster.kubeconfig),
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert set(figures) >= {"turnaround_ms", "trials_per_s", "writes_per_trial"}
    assert 0 < figures["turnaround_ms"]["p50"] <= figures["turnaround_ms"]["p99"]
    assert figures["trials_per_s"] > 0
    assert figures["samples"] == 15  # every trial after the first five replaced a finished one
    assert figures["writes_per_trial"] <= 6  # a count, not a timing: Trial, Job, result, amortised status
    assert figures["reconciles_per_trial"] > 0  # read from the operator's own kubenas_reconciles_total
    cpu = figures["cpu_ms_per_trial"]  # the test cluster's processes are found from its state file
    assert {"operator", "kube-apiserver", "etcd", "node-agent", "pods"} <= set(cpu), cpu
    assert cpu["kube-apiserver"] > 0 and cpu["total"] >= sum(v for k, v in cpu.items() if k != "total") - 0.1


def _operators_of(pid: int) -> list[int]:
    """The live ``kubenas operator`` processes that ``pid`` started."""
    found = []
    for child in child_pids(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"operator" in argv and b"bench" not in argv:
            found.append(child)
    return found


def test_a_stopped_benchmark_stops_the_operator_it_started(cluster: Any, crds: None) -> None:
    """SIGTERM (a timeout, a CI job ending) unwinds the benchmark: its operator does not outlive it."""
    args = ["--trials", "500", "--parallel", "2", "--trial-seconds", "5", "--kubeconfig", str(cluster.kubeconfig)]
    bench = subprocess.Popen(
        [sys.executable, "-m", "kubenas.cli", "bench", "operator", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        operators = wait_until("the benchmark's operator", lambda: _operators_of(bench.pid), timeout=60)
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=60) == 143
        wait_until("the operator to stop", lambda: not any(Path(f"/proc/{p}").exists() for p in operators), 30)
    finally:
        bench.kill()
        bench.wait()

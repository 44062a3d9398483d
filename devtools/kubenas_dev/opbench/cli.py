"""``kubenas bench operator``: the command; the figures are in ``figures``, the run in ``run``."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def bench_command(
    trials: int = typer.Option(200, "--trials", help="Trials to run."),
    parallel: int = typer.Option(50, "--parallel", help="Trials in flight at once."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the figures to this JSON file."),
    kubeconfig: Path | None = typer.Option(
        None, help="Use this cluster (it needs the CRDs); default: start a test cluster of its own."
    ),
    trial_seconds: float = typer.Option(
        0.0,
        "--trial-seconds",
        min=0.0,
        help="Each trial idles this long before it reports (0: zero-cost trials, which saturate the machine).",
    ),
    window: int = typer.Option(
        0, "--window", min=0, help="Trials per window of the operator's CPU figure (0: a tenth of the run, >= 50)."
    ),
    py_spy: Path | None = typer.Option(
        None,
        "--py-spy",
        help="Sample the operator with py-spy (it must be on PATH) and write its profile here (speedscope JSON).",
    ),
) -> None:
    """Operator turnaround with zero-cost trials: p50/p99 ms, trials/s, API writes per trial, the
    operator's CPU per trial (whole run and by window), its memory, the largest object it wrote."""
    import signal
    import sys

    from kubenas_dev.opbench.run import run_bench

    # Stopped from outside (a timeout, a CI job): unwind, so the operator and the test cluster the
    # benchmark started are stopped too instead of outliving it.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = run_bench(trials, parallel, kubeconfig, trial_seconds, window=window, profile=py_spy)
    finally:
        signal.signal(signal.SIGTERM, previous)
    figures = result.to_json()
    typer.echo(json.dumps(figures, indent=2))
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2) + "\n")

"""The cost of one ask with a long history: what a controller spends answering a trainer.

Why a benchmark and not a test: the figure depends on the machine. The strategy first runs
``history`` trials against the table (asks and tells in turn, failed rows told as failures), then
each of the next ``asks`` asks is timed (wall clock, the tell excluded). The
percentiles are over those timed asks, so they describe a controller that already holds
``history`` results.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from kubenas.bench.tabular import Table, experiment_spec
from kubenas.core.space import build_space
from kubenas.core.strategies import make_strategy
from kubenas.core.strategies.base import Observation


def ask_cost(
    table: Table, strategy: str, history: int, asks: int, seed: int = 0, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Time ``asks`` asks after ``history`` told trials; returns the figures as a JSON-ready dict."""
    spec = experiment_spec(table, strategy, seed, history + asks, 1, settings)
    space = build_space(spec.search_space)
    s = make_strategy(spec.strategy, space)
    names = [d.name for d in space.decisions]
    seconds: list[float] = []
    best = -math.inf
    for i in range(history + asks):
        started = time.perf_counter()
        arch = s.ask()
        if i >= history:
            seconds.append(time.perf_counter() - started)
        signal, _ = table.rows.get(tuple(arch[n] for n in names), (math.nan, math.nan))
        if math.isnan(signal):
            s.tell(i, arch, Observation(reward=None, failed=True))
        else:
            best = max(best, signal)
            s.tell(i, arch, Observation(reward=signal))
    ms = np.array(seconds) * 1000.0
    return {
        "strategy": strategy,
        "history": history,
        "asks": asks,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "best_signal": round(best, 4) if math.isfinite(best) else None,  # None: no asked row had one
    }

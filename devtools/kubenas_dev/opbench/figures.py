"""``kubenas bench operator``'s figures: how fast the operator turns a finished trial into the next one.

With zero-cost trials (a shell ``printf`` of the metrics), the time between a trainer pod's end and
the next trainer pod's creation is all operator, API server and Job controller. The benchmark
watches trainer pods from outside, timestamps each pod's first sight and its trainer's termination
(the watch's clock: the API server's own timestamps have one-second resolution), and reports:

- ``turnaround_ms`` p50 / p99: the i-th termination is paired with the (parallel+i)-th pod creation
  (each finished trial frees exactly one slot, so in steady state the k-th freed slot is filled by
  the k-th pod after the first ``parallel``);
- ``trials_per_s``: trials finished per second between the first pod's creation and the last end;
- ``writes_per_trial``: the operator's Kubernetes API writes (creates, patches, deletes, events,
  from its own ``kubenas_api_writes_total``) divided by the number of trials;
- ``operator_cpu_ms_per_trial``: CPU the operator process spent per trial (what scales with load);
- ``reconciles_per_trial``: the operator's reconcile passes per trial;
- ``breakdown_ms``: the turnaround split at the next Job's first sight: ``end_to_next_job`` (the
  operator's part, plus watch delivery) and ``job_to_pod`` (the Job controller and scheduler);
- ``cpu_ms_per_trial``: CPU per trial of the operator and of each process of the test cluster (API
  server, etcd, controller manager, scheduler, node agent, and ``pods``: the processes the agent
  started, trials and the experiment's controller) when the cluster is a development one;
- ``benchmark_cpu_ms_per_trial``: this benchmark's own watch; ``machine_cpu_ms_per_trial``: every
  core of the machine, whoever ran (the gap to the total is the benchmark and anything else);
- ``operator_cpu_windows``: the operator's CPU per trial over consecutive windows of trial ends
  (``--window`` trials each), and ``operator_cpu_window_spread``, how far the costliest window lies
  above the cheapest (a window made only of the last ``parallel`` trials, which start nothing, is
  left out): a cost that grows with the history shows as windows that rise with the trials seen;
- ``operator_rss_mib``: the operator process's peak resident memory over its whole life (the
  kernel's high-water mark, ``VmHWM``), ``operator_rss_final_mib`` the resident memory at the end;
- ``largest_object_kib``: the largest object the operator writes, read back from the API server at
  the end (the experiment with its status, each Trial, each trainer Job, the controller Secret),
  as compact JSON; ``largest_object_kib_by_kind`` the largest of each kind. etcd refuses objects
  over 1.5 MiB, and a status that grows with the history reaches that at some number of trials;
- ``load_average``: the machine's 1-minute load when the run started and ended (other work on a
  shared machine shows there).
  Zero-cost trials run as fast as the machine allows, so the figures are those of a saturated
  machine: where the CPU goes says where the turnaround goes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: a trial that costs nothing: the metrics are written and the process exits
ZERO_COST_COMMAND = [
    "sh",
    "-c",
    'printf \'{"val_accuracy": 0.%06d}\' $(( KUBENAS_SEED * 48271 % 999983 )) > "$KUBENAS_RESULT_FILE"',
]


def trial_command(seconds: float = 0.0) -> list[str]:
    """The benchmark's trial: zero-cost, or idle for about ``seconds`` first.

    An idle trial holds its slot without using the CPU, so the machine is not saturated by the
    benchmark itself. Its length is drawn from its seed, uniformly between half and one and a half
    times ``seconds``: trials that all lasted the same would start and end in lockstep, each round a
    burst of ends that no real search sees.
    """
    if seconds <= 0:
        return list(ZERO_COST_COMMAND)
    mean_ms = round(seconds * 1000)
    idle = (
        f"ms=$(( {mean_ms} * (50 + KUBENAS_SEED % 101) / 100 )); "
        'sleep "$(( ms / 1000 )).$(printf %03d $(( ms % 1000 )))"; '
    )
    return [ZERO_COST_COMMAND[0], ZERO_COST_COMMAND[1], idle + ZERO_COST_COMMAND[2]]


@dataclass(frozen=True)
class BenchResult:
    trials: int
    parallel: int
    turnaround_ms: list[float]
    seconds: float
    writes: float
    operator_ms: list[float] = field(default_factory=list)  # trainer's end → next Job seen
    job_to_pod_ms: list[float] = field(default_factory=list)  # Job seen → its pod seen
    operator_cpu_s: float = 0.0  # CPU the operator process used during the run
    trial_seconds: float = 0.0  # how long each trial idled (0: zero-cost)
    cluster_cpu_s: dict[str, float] = field(default_factory=dict)  # component → CPU seconds in the run
    benchmark_cpu_s: float = 0.0  # the benchmark's own process (its watch of the pods)
    passes: float = 0.0  # the operator's reconcile passes over the run
    machine_cpu_s: float = 0.0  # every core of the machine, whoever ran
    #: (trial ends seen, operator CPU seconds since the start) at each window's end, the start first
    cpu_marks: list[tuple[int, float]] = field(default_factory=list)
    rss_peak_bytes: int | None = None  # the operator's resident memory: the high-water mark
    rss_final_bytes: int | None = None  # ... and at the end of the run
    largest_bytes: dict[str, int] = field(default_factory=dict)  # kind → largest object's size
    load_average: tuple[float, float] | None = None  # 1-minute load at the start and the end

    def percentile(self, q: float) -> float:
        return percentile(self.turnaround_ms, q)

    def to_json(self) -> dict[str, Any]:
        return {
            "turnaround_ms": {"p50": round(self.percentile(50), 2), "p99": round(self.percentile(99), 2)},
            "trials_per_s": round(self.trials / self.seconds, 2) if self.seconds > 0 else None,
            "writes_per_trial": round(self.writes / self.trials, 3) if self.trials else None,
            "reconciles_per_trial": round(self.passes / self.trials, 2) if self.trials else None,
            "trials": self.trials,
            "parallel": self.parallel,
            "trial_seconds": self.trial_seconds,
            "samples": len(self.turnaround_ms),
            "operator_cpu_ms_per_trial": self._per_trial_ms(self.operator_cpu_s),
            "breakdown_ms": {
                "end_to_next_job": _p50_p99(self.operator_ms),
                "job_to_pod": _p50_p99(self.job_to_pod_ms),
            },
            "cpu_ms_per_trial": self.cpu_ms_per_trial(),
            "benchmark_cpu_ms_per_trial": self._per_trial_ms(self.benchmark_cpu_s),
            "machine_cpu_ms_per_trial": self._per_trial_ms(self.machine_cpu_s),
            "operator_cpu_windows": windows(self.cpu_marks),
            "operator_cpu_window_spread": spread(self.cpu_marks, tail_from=self.trials - self.parallel),
            "operator_rss_mib": _mib(self.rss_peak_bytes),
            "operator_rss_final_mib": _mib(self.rss_final_bytes),
            "largest_object_kib": round(max(self.largest_bytes.values()) / 1024, 2) if self.largest_bytes else None,
            "largest_object_kib_by_kind": {k: round(v / 1024, 2) for k, v in sorted(self.largest_bytes.items())},
            "load_average": list(self.load_average) if self.load_average else None,
        }

    def _per_trial_ms(self, seconds: float) -> float | None:
        return round(1000 * seconds / self.trials, 2) if self.trials else None

    def cpu_ms_per_trial(self) -> dict[str, float]:
        spent = {"operator": self.operator_cpu_s, **self.cluster_cpu_s}
        if not self.trials:
            return {}
        out = {name: round(1000 * s / self.trials, 2) for name, s in sorted(spent.items(), key=lambda kv: -kv[1])}
        out["total"] = round(1000 * sum(spent.values()) / self.trials, 2)
        return out


def windows(marks: Sequence[tuple[int, float]]) -> list[dict[str, float]]:
    """Operator CPU ms per trial between consecutive marks (trial ends seen, CPU seconds)."""
    out = []
    for (ends0, cpu0), (ends1, cpu1) in itertools.pairwise(marks):
        if ends1 > ends0:
            out.append({"from": ends0, "to": ends1, "ms": round(1000 * (cpu1 - cpu0) / (ends1 - ends0), 2)})
    return out


def spread(marks: Sequence[tuple[int, float]], tail_from: int | None = None) -> float | None:
    """(costliest - cheapest) / cheapest over the windows' CPU per trial; None under two windows.

    Windows that differ only by noise give a small spread; a pass that reads the whole history
    gives windows that rise with the trials seen, and a spread that grows with the run's length.
    Windows that start at ``tail_from`` or later are left out: the last ``parallel`` trials to end
    start no trial after them (the budget is spent), so a window made only of them is cheaper for
    a reason that has nothing to do with the history.
    """
    per_trial = [w["ms"] for w in windows(marks) if tail_from is None or w["from"] < tail_from]
    if len(per_trial) < 2 or min(per_trial) <= 0:
        return None
    return round((max(per_trial) - min(per_trial)) / min(per_trial), 3)


def _mib(size: int | None) -> float | None:
    return None if size is None else round(size / 2**20, 1)


def _p50_p99(values: Sequence[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 2), "p99": round(percentile(values, 99), 2)}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported figure was actually measured)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def turnarounds(terminations: Sequence[float], creations: Sequence[float], parallel: int) -> list[float]:
    """Milliseconds from each termination to the creation of the pod that took its slot."""
    ends, starts = sorted(terminations), sorted(creations)[parallel:]
    return [max(0.0, (s - e) * 1000.0) for e, s in zip(ends, starts, strict=False)]

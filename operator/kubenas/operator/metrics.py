"""The operator's Prometheus metrics. Labels stay bounded: namespace and experiment, never a trial.

Names follow Prometheus conventions (base units, ``_total`` for counters, ``_seconds`` for times).
The list, with what each is for, is in docs/operator.md; dashboards and alerts are built from it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server

from kubenas.operator.kube import is_write

TRIAL_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Infeasible", "Pruned", "Waiting")
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_TRIAL = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400)


class OperatorMetrics:
    """Every series the operator exports, in one registry (a fresh one per instance, for tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # CPU, memory and file descriptors for the operator-health panels
        ex = ["namespace", "experiment"]
        self.reconciles = Counter("kubenas_reconciles_total", "Experiment reconcile passes.", ex, registry=r)
        self.reconcile_errors = Counter(
            "kubenas_reconcile_errors_total", "Reconcile passes that failed and were retried.", ex, registry=r
        )
        self.reconcile_duration = Histogram(
            "kubenas_reconcile_duration_seconds", "Time of one reconcile pass.", ex, buckets=_FAST, registry=r
        )
        self.trials = Gauge("kubenas_trials", "Trials of an experiment by phase.", [*ex, "phase"], registry=r)
        self.trial_duration = Histogram(
            "kubenas_trial_duration_seconds",
            "Wall time of finished trials, from the first pod start to the end.",
            ex,
            buckets=_TRIAL,
            registry=r,
        )
        self.trial_turnaround = Histogram(
            "kubenas_trial_turnaround_seconds",
            "From the operator seeing a trainer pod terminate to the Job of the next trial being created.",
            ex,
            buckets=_FAST,
            registry=r,
        )
        self.best_reward = Gauge(
            "kubenas_experiment_best_reward", "Objective value of the best trial so far.", ex, registry=r
        )
        self.gpu_seconds = Counter(
            "kubenas_gpu_seconds_total", "GPU-seconds held by finished trainer pods.", ex, registry=r
        )
        # in seconds, Prometheus' base unit (promtool refuses hours); budget.maxGpuHours x 3600
        self.gpu_used = Gauge(
            "kubenas_experiment_gpu_seconds",
            "GPU-seconds the experiment's trials have used, running ones included (wall time x GPUs asked).",
            ex,
            registry=r,
        )
        self.gpu_limit = Gauge(
            "kubenas_experiment_gpu_seconds_limit", "The experiment's budget.maxGpuHours, in seconds.", ex, registry=r
        )
        self.oneshot_evaluations = Gauge(
            "kubenas_oneshot_evaluations",
            "Candidates of a one-shot search scored on its supernet and recorded (phase 2).",
            ex,
            registry=r,
        )
        self.controller_replays = Counter(
            "kubenas_controller_replays_total", "Trial histories replayed into a restarted controller.", ex, registry=r
        )
        self.experiments = Gauge(
            "kubenas_experiments", "Experiments known to the operator, by phase.", ["phase"], registry=r
        )
        self.api_requests = Counter(
            "kubenas_api_requests_total",
            "Kubernetes API requests the operator made, by verb, resource and HTTP code.",
            ["verb", "resource", "code"],
            registry=r,
        )
        self.api_duration = Histogram(
            "kubenas_api_request_duration_seconds",
            "Latency of the operator's Kubernetes API requests, by verb and resource.",
            ["verb", "resource"],
            buckets=_FAST,
            registry=r,
        )
        self.controller_calls = Histogram(
            "kubenas_controller_call_duration_seconds",
            "Latency of the operator's calls to experiment controllers, by endpoint.",
            ["endpoint"],
            buckets=_FAST,
            registry=r,
        )
        self.leader = Gauge(
            "kubenas_operator_leader",
            "1 while this process runs the experiments (it holds the Lease, or runs alone), 0 on standby.",
            registry=r,
        )
        self.api_writes = Counter(
            "kubenas_api_writes_total", "Kubernetes API writes (create, patch, delete) the operator made.", registry=r
        )

    def observe_request(self, verb: str, resource: str, code: int, seconds: float) -> None:
        self.api_requests.labels(verb, resource, str(code)).inc()
        self.api_duration.labels(verb, resource).observe(seconds)
        if is_write(verb):
            self.api_writes.inc()

    def set_trials(self, namespace: str, experiment: str, counts: Mapping[str, int]) -> None:
        for phase in TRIAL_PHASES:
            self.trials.labels(namespace, experiment, phase).set(counts.get(phase.lower(), 0))
        # Create the experiment's other series at zero: rate() and increase() cannot see the first
        # observation of a series that did not exist before it.
        for metric in (
            self.reconcile_errors,
            self.trial_duration,
            self.trial_turnaround,
            self.gpu_seconds,
            self.controller_replays,
        ):
            metric.labels(namespace, experiment)

    def forget(self, namespace: str, experiment: str) -> None:
        """Drop an experiment's series when it is deleted, so deleted experiments do not linger."""
        for metric in (
            self.reconciles,
            self.reconcile_errors,
            self.reconcile_duration,
            self.trial_duration,
            self.trial_turnaround,
            self.best_reward,
            self.gpu_seconds,
            self.gpu_used,
            self.gpu_limit,
            self.controller_replays,
            self.oneshot_evaluations,
        ):
            _remove(metric, namespace, experiment)
        for phase in TRIAL_PHASES:
            _remove(self.trials, namespace, experiment, phase)

    def serve(self, port: int, address: str = "127.0.0.1") -> int:
        """Serve /metrics over HTTP; returns the port (useful with 0)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return int(server.server_port)


def _remove(metric: Counter | Gauge | Histogram, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never observed: nothing to drop
        metric.remove(*labels)

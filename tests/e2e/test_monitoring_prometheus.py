"""Monitoring, proven against a real Prometheus scraping a real operator.

One module-wide run: the chart is installed, Debian's ``prometheus`` scrapes the operator at the
ready endpoints of the chart's metrics Service (found here from its EndpointSlices: Debian builds
Prometheus without Kubernetes discovery) with the ``job="kubenas-operator"`` label and
``honor_labels`` of docs/monitoring.md, and loads the chart's alert rules; a good experiment (trials
holding a GPU each) succeeds and a bad one (every trial exits 1) fails. Then:

* the exposition passes ``promtool check metrics``;
* every query of the Grafana dashboard returns data, and every alert expression evaluates;
* KubenasExperimentFailed fires, and the operator alerts stay quiet.

All traffic is on loopback: Prometheus on 127.0.0.1, the API server on 127.0.0.1, the operator
on its pod's 127.x address.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from kubenas.operator.metrics import TRIAL_PHASES
from kubenas.packaging.paths import METRICS_JOB, Layout
from kubenas_dev.cluster.launcher import Cluster
from kubenas_dev.cluster.pytest_plugin import KubeApis, wait_until
from kubenas_dev.monitoring import promql
from kubenas_dev.monitoring.prometheus import endpoint_targets, file_sd_config
from kubenas_dev.operator_testing import Kube, experiment_manifest
from kubenas_dev.packaging_testing import HelmRelease, OperatorPod, PrometheusServer, require

RELEASE = "kubenas"
SLEEP_S = 2
GOOD_TRIALS = 6
GOOD, BAD = "good", "bad"


@dataclass
class Observed:
    """What the tests look at once both experiments have ended and Prometheus has seen it."""

    namespace: str
    pod: OperatorPod
    prometheus: PrometheusServer
    good: dict[str, Any]
    bad: dict[str, Any]
    trainer_pods: list[dict[str, Any]]


def _discover(k8s: KubeApis, namespace: str, service: str) -> list[dict[str, Any]]:
    """Target groups for the Service's ready endpoints (what Kubernetes discovery would find)."""
    selector = f"kubernetes.io/service-name={service}"
    slices = [
        k8s.raw(s) for s in k8s.discovery.list_namespaced_endpoint_slice(namespace, label_selector=selector).items
    ]
    return endpoint_targets(slices)


def _has_data(prom: PrometheusServer, expr: str) -> bool:
    return bool(prom.query(expr).get("data", {}).get("result"))


def _has_value(prom: PrometheusServer, expr: str, value: float) -> bool:
    result = prom.query(expr).get("data", {}).get("result", [])
    return any(float(r["value"][1]) == value for r in result)


@pytest.fixture(scope="module")
def observed(cluster: Cluster, k8s: KubeApis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    helm = require("helm")
    binary = require("prometheus")
    work = tmp_path_factory.mktemp("monitoring")
    namespace = f"monitoring-{int(time.time()) % 100000}"
    k8s.core.create_namespace({"metadata": {"name": namespace, "labels": {"kubenas.io/e2e": "true"}}})
    wait_until("the default ServiceAccount", lambda: k8s.core.read_namespaced_service_account("default", namespace))
    release = HelmRelease(cluster.kubeconfig, RELEASE, namespace, {"watchNamespaces": [namespace]}, helm)
    prometheus: PrometheusServer | None = None
    kube = Kube(cluster.kubeconfig, namespace)
    try:
        release.install()
        pod = OperatorPod.find(cluster, k8s, namespace, RELEASE)
        targets = wait_until(
            "a ready endpoint of the metrics Service", lambda: _discover(k8s, namespace, f"{RELEASE}-metrics")
        )
        targets_file = work / "targets.json"
        targets_file.write_text(json.dumps(targets))
        job = file_sd_config(targets_file, interval="1s")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(Layout().alerts)],
            "scrape_configs": [job],
        }
        prometheus = PrometheusServer(binary, work / "prometheus", config).start()
        wait_until("Prometheus to scrape the operator", lambda: _has_value(prometheus, f'up{{job="{METRICS_JOB}"}}', 1))

        gpu = {"resources": {"limits": {"nvidia.com/gpu": 1}}}
        # Trials of a few seconds, so that Prometheus (1 s scrapes) sees the run progress: a series
        # is born at its first observation, which rate() cannot see, so it takes a second round.
        good = experiment_manifest(
            GOOD, max_trials=GOOD_TRIALS, parallel=2, template=gpu, settings={"sleep_s": SLEEP_S}
        )
        kube.apply_experiment(good)
        failing = [sys.executable, "-c", "raise SystemExit(1)"]
        bad = experiment_manifest(BAD, max_trials=3, parallel=1, command=failing, budget={"maxFailedTrials": 0})
        bad["spec"]["trialTemplate"]["retries"] = 0
        kube.apply_experiment(bad)
        good_done = kube.wait_phase(GOOD, timeout=240)
        bad_done = kube.wait_phase(BAD, timeout=240)
        trainer_pods = [k8s.raw(p) for p in kube.pods("kubenas.io/component=trainer")]
        # Prometheus has scraped the final state once both phases show in the experiments gauge.
        for phase in ("Succeeded", "Failed"):
            wait_until(
                f"Prometheus to see an experiment {phase}",
                lambda phase=phase: _has_value(prometheus, f'kubenas_experiments{{phase="{phase}"}}', 1),
                timeout=60,
            )
        # rate() needs two samples of a series in its window: give the last ones a few scrapes.
        # No failure here: test_every_dashboard_query_returns_data names the queries still empty.
        exprs = [e.expr for e in promql.dashboard_expressions()]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(_has_data(prometheus, q) for q in exprs):
            time.sleep(1)
        yield Observed(namespace, pod, prometheus, good_done, bad_done, trainer_pods)
    finally:
        kube.close()
        if prometheus is not None:
            prometheus.stop()
        release.uninstall()
        k8s.core.delete_namespace(namespace, propagation_policy="Background")


def test_the_experiments_ended_as_designed(observed: Observed) -> None:
    assert observed.good["status"]["phase"] == "Succeeded"
    assert observed.bad["status"]["phase"] == "Failed"
    gpus = [
        c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        for p in observed.trainer_pods
        if p["metadata"]["labels"].get("kubenas.io/experiment") == GOOD
        for c in p["spec"]["containers"]
    ]
    assert gpus and all(g == "1" for g in gpus), f"the good experiment's trainers did not hold a GPU: {gpus}"


def test_exposition_passes_promtool_check_metrics(observed: Observed) -> None:
    promtool = require("promtool")
    text = observed.pod.metrics_text()
    proc = subprocess.run([str(promtool), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
    assert "kubenas_trials{" in text


def test_prometheus_finds_the_operator_through_the_metrics_service(observed: Observed) -> None:
    (target,) = [t for t in observed.prometheus.targets() if t["labels"].get("job") == METRICS_JOB]
    assert target["health"] == "up", target
    assert target["scrapeUrl"] == observed.pod.metrics_url
    assert target["labels"]["kubernetes_namespace"] == observed.namespace
    # honor_labels keeps the series' own namespace label (the experiment's) as it is.
    series = 2 * len(TRIAL_PHASES)  # two experiments, a series per trial phase each
    assert _has_value(observed.prometheus, f'count(kubenas_trials{{namespace="{observed.namespace}"}})', series)


def test_every_dashboard_query_returns_data(observed: Observed) -> None:
    empty, failed = [], []
    for e in promql.dashboard_expressions():
        answer = observed.prometheus.query(e.expr)
        if answer.get("status") != "success":
            failed.append(f"{e.origin} [{e.legend}]: {e.expr}: {answer.get('error')}")
        elif not answer["data"]["result"]:
            empty.append(f"{e.origin} [{e.legend}]: {e.expr}")
    assert failed == [], "queries Prometheus refused"
    assert empty == [], "queries without data after a run"


def test_dashboard_shows_the_run(observed: Observed) -> None:
    prom, ns = observed.prometheus, observed.namespace
    best = observed.good["status"]["bestTrial"]
    answer = prom.query(f'kubenas_experiment_best_reward{{namespace="{ns}", experiment="{GOOD}"}}')
    assert float(answer["data"]["result"][0]["value"][1]) == pytest.approx(float(best["reward"]), rel=1e-9)
    assert _has_value(
        prom, f'sum(kubenas_trials{{namespace="{ns}", experiment="{GOOD}", phase="Succeeded"}})', GOOD_TRIALS
    )
    assert _has_value(prom, f'sum(kubenas_trials{{namespace="{ns}", experiment="{BAD}", phase="Failed"}})', 1)
    gpu = prom.query(f'sum(kubenas_gpu_seconds_total{{namespace="{ns}", experiment="{GOOD}"}})')
    assert float(gpu["data"]["result"][0]["value"][1]) >= GOOD_TRIALS * SLEEP_S, "each trial held one GPU"
    for metric in ("kubenas_trial_turnaround_seconds", "kubenas_trial_duration_seconds"):
        expr = f'histogram_quantile(0.95, sum by (le) (rate({metric}_bucket{{namespace="{ns}"}}[1m])))'
        value = float(prom.query(expr)["data"]["result"][0]["value"][1])
        assert math.isfinite(value), f"{metric}: p95 is {value}"
        print(f"{metric} p95 over the run: {value:.3f}s")


def test_every_alert_expression_evaluates(observed: Observed) -> None:
    failed = []
    for e in promql.rule_expressions():
        answer = observed.prometheus.query(e.expr)
        if answer.get("status") != "success":
            failed.append(f"{e.origin}: {answer.get('error')}")
    assert failed == []
    groups = observed.prometheus.api("rules")["data"]["groups"]
    health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
    assert len(health) == len(promql.rule_expressions())
    assert set(health.values()) == {"ok"}, health


def _alerts(observed: Observed, state: str) -> dict[str, dict[str, Any]]:
    return {a["labels"]["alertname"]: a for a in observed.prometheus.alerts() if a["state"] == state}


def test_a_failed_experiment_fires_its_alert(observed: Observed) -> None:
    alert = wait_until(
        "KubenasExperimentFailed to fire", lambda: _alerts(observed, "firing").get("KubenasExperimentFailed")
    )
    assert alert["labels"]["severity"] == "warning"
    assert alert["annotations"]["summary"] == "1 SearchExperiment(s) failed."
    failed_at = datetime.fromisoformat(observed.bad["status"]["completionTime"].replace("Z", "+00:00"))
    fired_at = datetime.fromisoformat(alert["activeAt"].replace("Z", "+00:00")[:26] + "+00:00")
    print(f"KubenasExperimentFailed active {(fired_at - failed_at).total_seconds():.1f}s after the experiment failed")


def test_a_healthy_operator_raises_no_operator_alert(observed: Observed) -> None:
    active = {**_alerts(observed, "pending"), **_alerts(observed, "firing")}
    for name in ("KubenasOperatorDown", "KubenasOperatorForbidden", "KubenasReconcileSlow"):
        assert name not in active, active[name]

"""High availability: several operators, one Lease (coordination.k8s.io/v1), exactly one acting.

* Two ``kubenas operator --leader-election`` processes on the same Lease: one leads (the Lease's
  holder, ``kubenas_operator_leader`` 1), the other stands by with a warm cache.
* The leader is killed with SIGKILL mid-run: the standby takes over once the Lease expires (about
  the lease duration) and the experiment ends Succeeded with every trial index exactly once and the
  trials an unbroken run would have made.
* The leader is stopped with SIGTERM: it stops its reconcilers and releases the Lease, and the
  standby takes over at its next retry, well under the lease duration.
* The chart with two replicas elects a leader by itself and runs an experiment.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubenas_dev.cluster.launcher import Cluster
from kubenas_dev.cluster.pytest_plugin import KubeApis, wait_until
from kubenas_dev.operator_fixtures import crds, kube
from kubenas_dev.operator_testing import Kube, OperatorProcess, experiment_manifest, wait_for
from kubenas_dev.packaging_testing import HelmRelease, OperatorPod, require

from .test_operator_recovery import assert_whole_history, succeeded, unbroken_sequential

__all__ = ["crds", "kube"]

LEASE = "kubenas-operator"
LEASE_DURATION_S = 15.0  # the default, as a Deployment runs it
RETRY_PERIOD_S = 2.0


class Pair:
    """Two operator processes campaigning for one Lease in the test namespace."""

    def __init__(self, cluster: Cluster, k8s: KubeApis, namespace: str, tmp_path: Path) -> None:
        self.k8s = k8s
        self.namespace = namespace
        self.operators = [
            OperatorProcess(
                Path(cluster.kubeconfig),
                tmp_path / f"operator-{i}.log",
                (namespace,),
                status_interval="0.5",
                leader_election=True,
                leader_election_namespace=namespace,
                leader_election_name=LEASE,
            )
            for i in range(2)
        ]

    def lease(self) -> dict[str, Any]:
        return dict(self.k8s.raw(self.k8s.coordination.read_namespaced_lease(LEASE, self.namespace)))

    def holder(self) -> str:
        try:
            return str(self.lease()["spec"].get("holderIdentity") or "")
        except Exception:
            return ""

    def leading(self) -> list[OperatorProcess]:
        """The running operators whose gauge says they lead."""
        return [op for op in self.operators if _alive(op) and op.metric("kubenas_operator_leader") == 1]

    def leader(self) -> OperatorProcess:
        """The one leader, once the election settled; its Lease identity is the one it logged."""
        (leader,) = wait_for("exactly one leader", lambda: (found := self.leading()) and len(found) == 1 and found)
        assert self.holder() == identity(leader), f"Lease holder {self.holder()!r}, leader logged {identity(leader)!r}"
        return leader

    def other(self, op: OperatorProcess) -> OperatorProcess:
        return next(o for o in self.operators if o is not op)

    def takeover(self, standby: OperatorProcess, since: float, timeout: float) -> float:
        """Seconds from ``since`` (monotonic) until ``standby`` leads."""
        wait_for("the standby to lead", lambda: standby.metric("kubenas_operator_leader") == 1, timeout, every=0.1)
        return time.monotonic() - since


def _alive(op: OperatorProcess) -> bool:
    return op.proc is not None and op.proc.poll() is None


def identity(op: OperatorProcess) -> str:
    """The Lease identity an operator logged when it last became leader."""
    found = ""
    for line in op.log().splitlines():
        if "became leader" in line:
            found = json.loads(line[line.index("{") :]).get("identity", "")
    return found


@pytest.fixture
def pair(cluster: Cluster, k8s: KubeApis, namespace: str, crds: None, tmp_path: Path) -> Iterator[Pair]:
    p = Pair(cluster, k8s, namespace, tmp_path)
    for op in p.operators:
        op.start()
    try:
        yield p
    finally:
        for op in p.operators:
            op.stop()
            tail = op.log().splitlines()[-40:]
            print(f"--- {op.log_path}, last {len(tail)} lines ---")
            print("\n".join(tail))


def test_one_leads_and_a_killed_leader_is_replaced_within_the_lease_duration(pair: Pair, kube: Kube) -> None:
    leader = pair.leader()
    standby = pair.other(leader)
    assert standby.metric("kubenas_operator_leader") == 0
    transitions = pair.lease()["spec"].get("leaseTransitions", 0)

    manifest = experiment_manifest(
        "failover", max_trials=12, parallel=3, strategy={"name": "random", "seed": 5}, settings={"sleep_s": 0.4}
    )
    kube.apply_experiment(manifest)
    wait_for("four results", lambda: succeeded(kube, "failover") >= 4, timeout=120)
    assert standby.metric("kubenas_reconciles_total") == 0, "the standby reconciled while the leader led"
    killed = time.monotonic()
    leader.kill()
    took = pair.takeover(standby, killed, timeout=LEASE_DURATION_S + 4 * RETRY_PERIOD_S + 10)
    print(f"failover after SIGKILL: {took:.1f} s")
    assert took <= LEASE_DURATION_S + 2 * RETRY_PERIOD_S + 2, f"took {took:.1f} s"
    lease = pair.lease()["spec"]
    assert lease["holderIdentity"] == identity(standby)
    assert lease["leaseTransitions"] == transitions + 1
    # MicroTime, as the client library re-serializes it
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|\+00:00)", lease["acquireTime"]), lease

    exp = kube.wait_phase("failover", timeout=240)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    trials = assert_whole_history(kube, "failover", 12)
    assert {t["spec"]["architectureId"] for t in trials} == {
        ",".join(f"{k}={v}" for k, v in r.architecture.items()) for r in unbroken_sequential(manifest)
    }


def test_a_stopped_leader_releases_the_lease_and_the_standby_takes_over_at_once(pair: Pair, kube: Kube) -> None:
    leader = pair.leader()
    standby = pair.other(leader)
    manifest = experiment_manifest(
        "handover", max_trials=8, parallel=2, strategy={"name": "random", "seed": 3}, settings={"sleep_s": 0.4}
    )
    kube.apply_experiment(manifest)
    wait_for("two results", lambda: succeeded(kube, "handover") >= 2, timeout=120)
    stopped = time.monotonic()
    leader.stop()  # SIGTERM: stop the reconcilers, release the Lease
    took = pair.takeover(standby, stopped, timeout=LEASE_DURATION_S)
    print(f"handover after SIGTERM: {took:.1f} s")
    assert took < LEASE_DURATION_S / 2, f"took {took:.1f} s: the Lease was not released"
    assert "lease released" in leader.log()
    assert pair.holder() == identity(standby)

    exp = kube.wait_phase("handover", timeout=240)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    assert_whole_history(kube, "handover", 8)


# -- the chart -------------------------------------------------------------------------------------
@pytest.fixture
def replicated(cluster: Cluster, namespace: str) -> Iterator[HelmRelease]:
    values = {"watchNamespaces": [namespace], "replicas": 2}
    release = HelmRelease(cluster.kubeconfig, "kubenas", namespace, values, require("helm"))
    release.install()
    try:
        yield release
    finally:
        release.uninstall()


def _operator_pods(cluster: Cluster, k8s: KubeApis, namespace: str) -> list[OperatorPod]:
    selector = "app.kubernetes.io/instance=kubenas,app.kubernetes.io/component=operator"
    pods = []
    for pod in k8s.core.list_namespaced_pod(namespace, label_selector=selector).items:
        directory = cluster.pod_dir(namespace, pod.metadata.name)
        if pod.status.pod_ip and directory is not None:
            pods.append(OperatorPod(body=k8s.raw(pod), directory=Path(directory)))
    return pods


def test_two_replicas_of_the_chart_elect_one_leader_and_run_an_experiment(
    cluster: Cluster, namespace: str, k8s: KubeApis, replicated: HelmRelease
) -> None:
    def elected() -> tuple[str, list[OperatorPod]] | None:
        pods = _operator_pods(cluster, k8s, namespace)
        try:
            lease = k8s.coordination.read_namespaced_lease("kubenas", namespace)
            gauges = [p.metric("kubenas_operator_leader") for p in pods]
        except Exception:
            return None
        holder = lease.spec.holder_identity or ""
        return (holder, pods) if len(pods) == 2 and sorted(gauges) == [0, 1] else None

    holder, pods = wait_until("one of two replicas to lead", elected, timeout=120)
    (leader,) = [p for p in pods if p.metric("kubenas_operator_leader") == 1]
    assert holder.startswith(leader.body["metadata"]["name"] + "_"), holder  # POD_NAME from the downward API

    kube = Kube(cluster.kubeconfig, namespace)
    try:
        kube.apply_experiment(experiment_manifest("replicated", max_trials=2, parallel=2))
        done = kube.wait_phase("replicated", timeout=120)
    finally:
        kube.close()
    assert done["status"]["phase"] == "Succeeded", json.dumps(done.get("status"), indent=1)
    for pod in pods:
        assert pod.metric("kubenas_api_requests_total", code="403") == 0, f"refused by RBAC; see {pod.log_path}"
    (standby,) = [p for p in pods if p is not leader]
    assert standby.metric("kubenas_reconciles_total") == 0

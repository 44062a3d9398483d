"""Installing Kubenas on the real test cluster, the way users do.

* the rendered chart passes ``kubectl apply --server-side --dry-run=server`` (the API server's own
  validation, admission included), after its CRDs are applied for real;
* ``helm install --wait`` starts the operator pod (its readiness probe is kopf's liveness endpoint),
  and an experiment runs to the end with the operator using *its own* ServiceAccount token, so every
  request it makes passes the chart's RBAC; the same credentials are refused what they must not do;
* the plain ``kubectl apply`` bundle (cluster-wide) starts a working operator too.

The node agent runs the operator pod as a local process with a kubeconfig holding the pod's
projected ServiceAccount token (docs/cluster.md), so nothing here uses admin credentials on the
operator's behalf. (``helm lint --strict`` runs in tests/unit/test_chart.py: it needs no cluster.)
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubenas.packaging import chart
from kubenas.packaging.paths import NAMESPACE, Layout
from kubenas_dev.cluster.launcher import Cluster
from kubenas_dev.cluster.pytest_plugin import KubeApis, wait_until
from kubenas_dev.operator_testing import Kube, experiment_manifest
from kubenas_dev.packaging_testing import HelmRelease, OperatorPod, require

LAYOUT = Layout()


@pytest.fixture(scope="module")
def helm() -> Path:
    return require("helm")


def _kubectl(
    cluster: Cluster, *args: str, kubeconfig: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    config = kubeconfig or cluster.kubeconfig
    cmd = [cluster.state.kubectl, f"--kubeconfig={config}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, input=stdin, timeout=120)


def test_rendered_chart_passes_a_server_side_dry_run(cluster: Cluster, namespace: str, helm: Path) -> None:
    crds = _kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", str(LAYOUT.chart_crds))
    assert crds.returncode == 0, f"the chart's CRDs are refused by the API server:\n{crds.stderr}"
    variants: dict[str, dict[str, Any]] = {
        "cluster-wide": {},
        "namespaced-ha": {"watchNamespaces": [namespace], "replicas": 2},
    }
    for label, values in variants.items():
        rendered = chart.template(values, release=f"dry-{label}", namespace=namespace, helm=helm)
        count = len([d for d in yaml.safe_load_all(rendered) if d])
        proc = _kubectl(cluster, "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=rendered)
        assert proc.returncode == 0, f"{label}: {proc.stderr}"
        assert proc.stdout.count("(server dry run)") == count, proc.stdout


@pytest.fixture
def release(cluster: Cluster, namespace: str, helm: Path) -> Iterator[HelmRelease]:
    rel = HelmRelease(cluster.kubeconfig, "kubenas", namespace, {"watchNamespaces": [namespace]}, helm)
    rel.install()
    try:
        yield rel
    finally:
        rel.uninstall()


def test_helm_install_runs_an_experiment_as_the_charts_service_account(
    cluster: Cluster, namespace: str, k8s: KubeApis, release: HelmRelease
) -> None:
    assert release.status()["info"]["status"] == "deployed"
    assert f"serves SearchExperiments in these namespaces: {namespace}." in release.output  # NOTES.txt
    pod = OperatorPod.find(cluster, k8s, namespace, release.name)
    assert pod.body["spec"]["serviceAccountName"] == "kubenas"

    # The operator's credentials are the pod's projected token of the chart's ServiceAccount.
    whoami = _kubectl(cluster, "auth", "whoami", "-o", "json", kubeconfig=pod.kubeconfig)
    assert whoami.returncode == 0, whoami.stderr
    username = json.loads(whoami.stdout)["status"]["userInfo"]["username"]
    assert username == f"system:serviceaccount:{namespace}:kubenas"

    kube = Kube(cluster.kubeconfig, namespace)
    try:
        kube.apply_experiment(experiment_manifest("installed", max_trials=4, parallel=2))
        done = kube.wait_phase("installed", timeout=240)
        assert done["status"]["phase"] == "Succeeded", json.dumps(done.get("status"), indent=1)
        trials = kube.trials("installed")
        assert len(trials) == 4 and all(t["status"]["phase"] == "Succeeded" for t in trials)
    finally:
        kube.close()

    # Everything the operator asked the API server for was allowed.
    refused = pod.metric("kubenas_api_requests_total", code="403")
    assert refused == 0, f"{refused} requests refused by RBAC; see {pod.log_path}"
    assert pod.metric("kubenas_api_requests_total", resource="trials", verb="post") == 4


@pytest.fixture
def foreign_secret(k8s: KubeApis) -> Iterator[tuple[str, str]]:
    """A Secret in a namespace the operator does not serve."""
    ns, name = "default", "kubenas-e2e-not-yours"
    k8s.core.create_namespaced_secret(ns, {"metadata": {"name": name}, "stringData": {"k": "v"}})
    try:
        yield ns, name
    finally:
        k8s.core.delete_namespaced_secret(name, ns)


def test_the_charts_service_account_is_refused_the_rest(
    cluster: Cluster, namespace: str, k8s: KubeApis, release: HelmRelease, foreign_secret: tuple[str, str]
) -> None:
    pod = OperatorPod.find(cluster, k8s, namespace, release.name)
    other_ns, secret = foreign_secret
    forbidden = {
        "read a Secret of another namespace": ["get", "secret", secret, "-n", other_ns],
        "list Secrets of its own namespace": ["get", "secrets", "-n", namespace],
        "list Secrets cluster-wide": ["get", "secrets", "--all-namespaces"],
        "delete a Node": ["delete", "node", "node-cpu-0", "--dry-run=server"],
        "grant itself cluster-admin": [
            "create", "clusterrolebinding", "kubenas-escalate", "--clusterrole=cluster-admin",
            f"--serviceaccount={namespace}:kubenas", "--dry-run=server",
        ],
        "create Jobs in another namespace": [
            "create", "job", "nope", "-n", other_ns, "--image=busybox", "--dry-run=server",
        ],
    }  # fmt: skip
    for what, args in forbidden.items():
        proc = _kubectl(cluster, *args, kubeconfig=pod.kubeconfig)
        refused = proc.returncode != 0 and "forbidden" in proc.stderr.lower()
        assert refused, f"allowed to {what}: {proc.stdout}{proc.stderr}"
        assert f"system:serviceaccount:{namespace}:kubenas" in proc.stderr
    allowed = _kubectl(cluster, "auth", "can-i", "create", "jobs.batch", "-n", namespace, kubeconfig=pod.kubeconfig)
    assert allowed.stdout.strip() == "yes"


def test_uninstall_removes_the_operator_and_keeps_the_crds(
    cluster: Cluster, namespace: str, k8s: KubeApis, helm: Path
) -> None:
    rel = HelmRelease(cluster.kubeconfig, "kubenas", namespace, {"watchNamespaces": [namespace]}, helm)
    rel.install()
    rel.uninstall()
    selector = f"app.kubernetes.io/instance={rel.name}"

    def gone() -> bool:
        return not k8s.core.list_namespaced_pod(namespace, label_selector=selector).items

    wait_until("the operator pod to go", gone)
    assert not k8s.rbac.list_namespaced_role(namespace, label_selector=selector).items
    crd = k8s.apiext.read_custom_resource_definition("searchexperiments.kubenas.io")
    assert crd.metadata.name == "searchexperiments.kubenas.io"


@pytest.fixture
def bundle(cluster: Cluster) -> Iterator[list[dict[str, Any]]]:
    """deploy/kubenas.yaml applied; removed afterwards except its CRDs (other tests' experiments use them)."""
    objs = [o for o in yaml.safe_load_all(LAYOUT.bundle.read_text()) if o]
    proc = _kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", str(LAYOUT.bundle))
    assert proc.returncode == 0, proc.stderr
    try:
        yield objs
    finally:
        # --wait: returns once the namespace (and the operator pod in it) is gone.
        keep = [o for o in objs if o["kind"] != "CustomResourceDefinition"]
        _kubectl(cluster, "delete", "--ignore-not-found", "--wait=true", "-f", "-", stdin=yaml.safe_dump_all(keep))


def test_kubectl_bundle_runs_an_experiment(
    cluster: Cluster, namespace: str, k8s: KubeApis, bundle: list[dict[str, Any]]
) -> None:
    def available() -> bool:
        dep = k8s.apps.read_namespaced_deployment("kubenas", NAMESPACE)
        return (dep.status.available_replicas or 0) >= 1

    wait_until("the bundle's operator to be available", available, timeout=180)
    pod = OperatorPod.find(cluster, k8s, NAMESPACE, "kubenas")
    assert "--all-namespaces" in pod.body["spec"]["containers"][0]["args"]
    kube = Kube(cluster.kubeconfig, namespace)
    try:
        kube.apply_experiment(experiment_manifest("bundled", max_trials=2, parallel=2))
        done = kube.wait_phase("bundled", timeout=240)
        assert done["status"]["phase"] == "Succeeded", json.dumps(done.get("status"), indent=1)
    finally:
        kube.close()
    # Cluster-wide, it may create work anywhere but still not list Secrets. (Its 403 count is not
    # checked here: other tests' namespaces may be terminating, which refuses creates with 403.)
    for verb, target, expected in (("create", "jobs.batch", "yes"), ("list", "secrets", "no")):
        can = _kubectl(cluster, "auth", "can-i", verb, target, "-n", namespace, kubeconfig=pod.kubeconfig)
        assert can.stdout.strip() == expected, f"{verb} {target}: {can.stdout}{can.stderr}"

"""pytest fixtures for tests against the development cluster.

Enable with ``from kubenas_dev.cluster.pytest_plugin import *`` in a conftest (tests/e2e does).

* ``cluster`` (session): one cluster for the whole run, started in a fresh temporary directory and
  stopped at the end (a watchdog stops it if pytest is killed). With ``KUBENAS_CLUSTER_DIR`` set to
  the directory of a cluster already running (``make cluster-up``), that one is used and left
  running, which makes iterating on one test quick.
* ``namespace`` (function): a fresh namespace with its ``default`` ServiceAccount ready; deleted
  after the test.
* ``k8s`` (session): typed API groups on the admin client: ``k8s.core``, ``k8s.apps``,
  ``k8s.batch``, ``k8s.rbac``, ``k8s.custom``, ``k8s.apiext``, ``k8s.discovery``, ``k8s.api``.
* ``faults`` (session): the node agent's fault API (``kill``, ``oom``, ``evict``,
  ``set_node_ready``).

If the binaries are missing and cannot be built, or the cluster does not start, the fixture fails
the test: e2e tests never skip silently.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from kubenas_dev.cluster.errors import DevClusterError
from kubenas_dev.cluster.faults import FaultClient
from kubenas_dev.cluster.launcher import Cluster, StartOptions

__all__ = ["KubeApis", "cluster", "faults", "k8s", "namespace", "prebuild", "wait_until"]

T = TypeVar("T")


def wait_until(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.25,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except ApiException as err:
            last_error = err
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


@dataclass
class KubeApis:
    api: k8s_client.ApiClient

    @property
    def core(self) -> k8s_client.CoreV1Api:
        return k8s_client.CoreV1Api(self.api)

    @property
    def apps(self) -> k8s_client.AppsV1Api:
        return k8s_client.AppsV1Api(self.api)

    @property
    def batch(self) -> k8s_client.BatchV1Api:
        return k8s_client.BatchV1Api(self.api)

    @property
    def rbac(self) -> k8s_client.RbacAuthorizationV1Api:
        return k8s_client.RbacAuthorizationV1Api(self.api)

    @property
    def custom(self) -> k8s_client.CustomObjectsApi:
        return k8s_client.CustomObjectsApi(self.api)

    @property
    def apiext(self) -> k8s_client.ApiextensionsV1Api:
        return k8s_client.ApiextensionsV1Api(self.api)

    @property
    def discovery(self) -> k8s_client.DiscoveryV1Api:
        return k8s_client.DiscoveryV1Api(self.api)

    @property
    def coordination(self) -> k8s_client.CoordinationV1Api:
        return k8s_client.CoordinationV1Api(self.api)

    def raw(self, obj: Any) -> dict[str, Any]:
        """A client model as the plain camelCase dict the API serves."""
        result: dict[str, Any] = self.api.sanitize_for_serialization(obj)
        return result


#: what could not be built ("control plane", "kueue") and why; the fixtures that need it fail with it
BUILD_ERRORS: dict[str, str] = {}


def _uses(items: list[pytest.Item], fixture: str) -> bool:
    return any(fixture in getattr(i, "fixturenames", ()) for i in items)


def prebuild(items: list[pytest.Item]) -> None:
    """Build the binaries before the first test if any selected test needs the cluster (and Kueue
    if one needs the ``kueue`` fixture).

    Called from ``pytest_collection_finish``: a cold build takes 15-40 minutes, far beyond a per-test
    timeout, so it must not happen inside the first test's fixture setup. A failure is remembered
    and reported by the ``cluster`` or ``kueue`` fixture, so the tests fail rather than skip.
    """
    from kubenas_dev.cluster import build

    if not os.environ.get("KUBENAS_CLUSTER_DIR") and _uses(items, "cluster") and build.toolchain().manifest() is None:
        try:
            build.ensure_built()
        except DevClusterError as err:
            BUILD_ERRORS["control plane"] = str(err)
            return
    if _uses(items, "kueue"):
        from kubenas_dev.kueue import build as kueue_build

        if kueue_build.kueue_build().manifest() is None:
            try:
                kueue_build.ensure_built()
            except DevClusterError as err:
                BUILD_ERRORS["kueue"] = str(err)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if "control plane" in BUILD_ERRORS:
        pytest.fail(f"control-plane binaries could not be built: {BUILD_ERRORS['control plane']}", pytrace=False)
    existing = os.environ.get("KUBENAS_CLUSTER_DIR")
    if existing:
        try:
            running = Cluster.attach(Path(existing).resolve())
        except DevClusterError as err:
            pytest.fail(f"KUBENAS_CLUSTER_DIR={existing}: {err}")
        if not running.is_running():
            pytest.fail(f"KUBENAS_CLUSTER_DIR={existing}: the cluster there is not running")
        yield running
        return
    cluster_dir = Path(tempfile.mkdtemp(prefix="kubenas-cluster-"))
    try:
        started = Cluster.start(cluster_dir, StartOptions(owner_pid=os.getpid()))
    except DevClusterError as err:
        pytest.fail(f"development cluster did not start: {err}", pytrace=False)
    try:
        yield started
    finally:
        started.stop(remove=os.environ.get("KUBENAS_KEEP_CLUSTER") != "1")


@pytest.fixture(scope="session")
def k8s(cluster: Cluster) -> KubeApis:
    return KubeApis(cluster.api_client())


@pytest.fixture(scope="session")
def faults(cluster: Cluster) -> FaultClient:
    return cluster.faults


def _namespace_name(nodeid: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", nodeid.rsplit("::", 1)[-1].lower()).strip("-")
    return f"{base[:40].rstrip('-')}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(request: pytest.FixtureRequest, k8s: KubeApis) -> Iterator[str]:
    name = _namespace_name(request.node.nodeid)
    k8s.core.create_namespace({"metadata": {"name": name, "labels": {"kubenas.io/e2e": "true"}}})
    # Pods are refused until the ServiceAccount controller has made `default` here.
    wait_until(f"ServiceAccount default in {name}", lambda: k8s.core.read_namespaced_service_account("default", name))
    try:
        yield name
    finally:
        try:
            k8s.core.delete_namespace(name, propagation_policy="Background")
        except ApiException as err:
            if err.status != 404:
                raise

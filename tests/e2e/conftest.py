"""End-to-end tests against the real development cluster (docs/cluster.md).

The fixtures come from ``kubenas_dev.cluster.pytest_plugin``: ``cluster`` (one per test run),
``namespace`` (fresh per test), ``k8s`` (API groups on an admin client) and ``faults``.
Every test that uses the cluster is marked ``e2e``, so ``pytest -m e2e`` selects exactly them.
"""

from __future__ import annotations

import pytest

from kubenas_dev.cluster.pytest_plugin import KubeApis, cluster, faults, k8s, namespace, prebuild, wait_until

__all__ = ["KubeApis", "cluster", "faults", "k8s", "namespace", "wait_until"]


@pytest.hookimpl(tryfirst=True)  # before `-m e2e` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    prebuild(session.items)  # a cold build must not count against the first test's timeout

"""pytest fixtures for the operator's end-to-end tests (they build on ``kubenas_dev.cluster.pytest_plugin``).

Import them into a test module: ``from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator``.

* ``crds`` (session): the Kubenas CRDs installed and served.
* ``kube`` (function): a ``testing.Kube`` on the test's namespace.
* ``kubenas_operator`` (function): ``kubenas operator`` serving the test's namespace only, in a child
  process that a test may kill and start again; its log is printed when the test ends (pytest
  shows it for failed tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubenas_dev.operator_testing import Kube, OperatorProcess, install_crds

__all__ = ["crds", "kube", "kubenas_operator"]


@pytest.fixture(scope="session")
def crds(cluster: Any) -> None:
    install_crds(Path(cluster.kubeconfig))


@pytest.fixture
def kube(cluster: Any, namespace: str, crds: None) -> Iterator[Kube]:
    k = Kube(Path(cluster.kubeconfig), namespace)
    try:
        yield k
    finally:
        k.close()


@pytest.fixture
def kubenas_operator(cluster: Any, namespace: str, crds: None, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(Path(cluster.kubeconfig), tmp_path / "operator.log", (namespace,), status_interval="0.5")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        tail = process.log().splitlines()[-80:]
        print(f"--- operator log ({process.log_path}), last {len(tail)} lines ---")
        print("\n".join(tail))

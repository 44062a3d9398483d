"""The ``kueue`` pytest fixture: Kueue running with the test cluster.

Import it into a test module (``from kubenas_dev.kueue.fixtures import kueue``). The binary is built
before the first test by the cluster plugin's ``prebuild`` (``kubenas cluster build`` builds it
too); if it cannot be built or does not start, the test fails: it never skips.

Session scope: starting Kueue (certificates, webhooks) takes seconds, and its CRDs cannot be
uninstalled cheaply. At the end of the session the webhook configurations are removed before the
process stops, so nothing later calls a webhook that is gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kubenas_dev.cluster.errors import DevClusterError
from kubenas_dev.cluster.pytest_plugin import BUILD_ERRORS
from kubenas_dev.kueue import build
from kubenas_dev.kueue.controller import KueueController

__all__ = ["kueue"]


@pytest.fixture(scope="session")
def kueue(cluster: Any) -> Iterator[KueueController]:
    if "kueue" in BUILD_ERRORS:
        pytest.fail(f"Kueue could not be built: {BUILD_ERRORS['kueue']}", pytrace=False)
    try:
        controller = KueueController.start(cluster, build.ensure_built())
    except DevClusterError as err:
        pytest.fail(f"Kueue did not start: {err}", pytrace=False)
    try:
        yield controller
    finally:
        controller.stop()

"""Test helpers for the chart and monitoring tests (the pattern of ``kopf.testing``).

The chart tests need helm, promtool and prometheus. On a developer machine without them a test is
skipped with the command that installs them; under CI (``CI`` set) a missing tool fails the test,
so a CI image that lost a tool cannot pass by skipping.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kubenas.packaging.helm import find_helm

INSTALL_HINTS = {
    "helm": "run `kubenas cluster build` (or set KUBENAS_HELM)",
    "promtool": "apt-get install -y prometheus",
    "prometheus": "apt-get install -y prometheus",
}


def require(name: str) -> Path:
    """The tool's path, or skip (fail under CI) saying how to install it."""
    found = find_helm() if name == "helm" else (Path(p) if (p := shutil.which(name)) else None)
    if found is not None and found.exists():
        return found
    message = f"{name} is not installed: {INSTALL_HINTS.get(name, 'install it')}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)

"""Finding and running the helm binary.

helm is built from the Go module proxy with the test control plane (``kubenas cluster build``, from
the development tools) and cached with it; ``$KUBENAS_HELM`` or a helm on PATH work too. The
development tools point to their helm through the ``kubenas.helm`` entry points, so this package
never imports them. The bundle is rendered with that one
pinned helm so that it is byte-for-byte reproducible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from kubenas.core.errors import KubenasError

#: Entry-point group of callables ``() -> Path | None``: where an installed tool set keeps a helm.
HELM_GROUP = "kubenas.helm"


class HelmError(KubenasError):
    """helm is missing or a helm command failed."""


def find_helm() -> Path | None:
    """``$KUBENAS_HELM``, else the cluster build's helm, else the first helm on PATH."""
    env = os.environ.get("KUBENAS_HELM")
    if env:
        return Path(env)
    for entry in entry_points(group=HELM_GROUP):
        built = entry.load()()
        if built is not None:
            return Path(built)
    found = shutil.which("helm")
    return Path(found) if found else None


def helm_binary() -> Path:
    found = find_helm()
    if found is None:
        raise HelmError("no helm binary: run `kubenas cluster build`, or set KUBENAS_HELM")
    return found


def run_helm(args: Sequence[str], *, helm: Path | None = None, cwd: Path | None = None) -> str:
    """Run helm and return its stdout; a failure raises with helm's own message."""
    binary = helm or helm_binary()
    # A private HOME-independent config: rendering must not depend on the user's repositories or plugins.
    env = {**os.environ, "HELM_PLUGINS": "/nonexistent"}
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, cwd=cwd, env=env)
    if proc.returncode != 0:
        # helm lint reports its findings on stdout and only the verdict on stderr: keep both.
        detail = "\n".join(part.strip() for part in (proc.stdout, proc.stderr) if part.strip())
        raise HelmError(f"helm {' '.join(args[:2])} failed:\n{detail}")
    return proc.stdout

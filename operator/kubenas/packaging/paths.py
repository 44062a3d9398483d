"""Where the chart, its generated parts and the bundle live in the repository."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The repository root (this file is operator/kubenas/packaging/paths.py).
REPO = Path(__file__).resolve().parents[3]

RELEASE = "kubenas"
NAMESPACE = "kubenas-system"
METRICS_JOB = "kubenas-operator"
#: Passed to helm as --kube-version: helm built from source defaults to v1.20 (its release builds get
#: the real default through ldflags), and the chart needs at least 1.30. The test control plane
#: (kubenas_dev.cluster.versions) is built at this version, so the bundle is rendered for the
#: Kubernetes the tests install it into.
KUBE_VERSION = "v1.32.2"


@dataclass(frozen=True)
class Layout:
    """Paths relative to one checkout, so tests can point the generators at a scratch copy."""

    root: Path = REPO

    @property
    def chart(self) -> Path:
        return self.root / "charts" / "kubenas"

    @property
    def chart_crds(self) -> Path:
        return self.chart / "crds"

    @property
    def dashboard(self) -> Path:
        return self.chart / "files" / "dashboards" / "kubenas.json"

    @property
    def admission_policy(self) -> Path:
        return self.chart / "templates" / "admission-policy.yaml"

    @property
    def alerts(self) -> Path:
        return self.chart / "files" / "alerts.yaml"

    @property
    def bundle(self) -> Path:
        return self.root / "deploy" / "kubenas.yaml"

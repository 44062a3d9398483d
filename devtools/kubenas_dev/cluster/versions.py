"""The pinned versions of the test control plane.

Kubernetes 1.32 because the machine's kubectl is 1.32 (supported skew) and it is at least 1.31.
The patch release (``kubenas.packaging.paths.KUBE_VERSION``, which the chart is rendered for) is
v1.32.2 because it is one whose every staging module (k8s.io/api v0.32.2, ...)
the module proxy serves: later 1.32 patches lack some (k8s.io/endpointslice v0.32.13 answers
403). etcd from the 3.5 line that Kubernetes 1.32 supports; helm from the 3.x line. ``revision``
counts changes to how we build (the loopback-endpoint patch). Changing any of them changes the
cache key, so old and new builds live side by side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from kubenas.packaging.paths import KUBE_VERSION


@dataclass(frozen=True)
class Versions:
    kubernetes: str
    etcd: str
    helm: str
    revision: int = 1

    @property
    def key(self) -> str:
        """Directory name under the cache root, e.g. ``k8s-v1.32.2_etcd-v3.5.35_helm-v3.22.0_r1``."""
        return f"k8s-{self.kubernetes}_etcd-{self.etcd}_helm-{self.helm}_r{self.revision}"

    def describe(self) -> str:
        return f"Kubernetes {self.kubernetes}, etcd {self.etcd}, helm {self.helm}"

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


VERSIONS = Versions(kubernetes=KUBE_VERSION, etcd="v3.5.35", helm="v3.22.0")

KUEUE = "v0.17.0"
"""The Kueue release whose controller, CRDs and webhooks the tests of queued trials run.

The oldest release the module proxy serves; it supports Kubernetes 1.29 and newer (its README), so
it runs against the control plane above. It is cached apart from the control plane
(``<cache>/kueue-<version>``): bumping it rebuilds Kueue alone, never the control plane.
"""

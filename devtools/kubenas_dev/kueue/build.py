"""Build Kueue's controller from the Go module proxy and render its upstream manifests, once per machine.

``sigs.k8s.io/kueue`` has no local ``replace`` directives, so a wrapper module that requires it
(as for helm) is enough. Next to the binary goes ``upstream.yaml``: the release's own Helm chart
(``charts/kueue`` inside the module) rendered by the control plane's helm, so the tests read the
CRDs, RBAC and webhook configurations exactly as upstream ships them and need neither the module
cache nor the network later. Everything lives in ``<cache>/kueue-<version>``, apart from the
control plane's build, so a Kueue bump never rebuilds Kubernetes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kubenas_dev.cluster import build
from kubenas_dev.cluster.errors import BuildError
from kubenas_dev.cluster.log import get_logger
from kubenas_dev.cluster.versions import KUEUE

log = get_logger("kubenas_dev.kueue.build")

MODULE = "sigs.k8s.io/kueue"
COMMAND = f"{MODULE}/cmd/kueue"
CHART = "charts/kueue"
NAMESPACE = "kueue-system"
RELEASE = "kueue"  # the release name the chart's object names start with (kueue-webhook-service, ...)


@dataclass
class KueueManifest:
    """What a finished Kueue build holds; its presence is the "already built" marker."""

    version: str
    binary: str
    upstream: str
    build_seconds: float
    built_at: str

    @classmethod
    def load(cls, path: Path) -> KueueManifest:
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)


@dataclass(frozen=True)
class KueueBuild:
    """Where one Kueue version's build lives."""

    version: str
    root: Path

    @property
    def home(self) -> Path:
        return self.root / f"kueue-{self.version}"

    @property
    def binary(self) -> Path:
        return self.home / "bin" / "kueue"

    @property
    def upstream(self) -> Path:
        """The chart rendered for namespace ``kueue-system``: every object upstream installs."""
        return self.home / "upstream.yaml"

    @property
    def manifest_path(self) -> Path:
        return self.home / build.MANIFEST

    def manifest(self) -> KueueManifest | None:
        """The manifest when the build is complete, else ``None``."""
        if not (self.manifest_path.exists() and self.binary.exists() and self.upstream.exists()):
            return None
        return KueueManifest.load(self.manifest_path)


def kueue_build(version: str = KUEUE) -> KueueBuild:
    return KueueBuild(version=version, root=build.cache_root())


def ldflags(version: str) -> str:
    """The version the binary logs at start (upstream's Makefile sets the same variable)."""
    return f"-X {MODULE}/pkg/version.GitVersion={version}"


def render_chart(helm: Path, chart_dir: Path, namespace: str = NAMESPACE) -> str:
    """``helm template`` of upstream's chart with its default values: the objects a Helm install makes."""
    cmd = [str(helm), "template", RELEASE, str(chart_dir), "--namespace", namespace]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError("kueue: chart", f"`helm template` failed:\n{proc.stderr[-4000:]}")
    return proc.stdout


def ensure_built(
    version: str = KUEUE, *, force: bool = False, parallelism: int | None = None, echo: bool = True
) -> KueueManifest:
    """Build Kueue unless ``version`` is cached; the control plane's helm must be built (it renders the chart)."""
    kb = kueue_build(version)
    cached = kb.manifest()
    if cached and not force:
        return cached
    helm = build.built_helm()
    if helm is None:
        raise BuildError("kueue", "helm is not built; `kubenas cluster build` builds it before Kueue")
    with build.build_lock(kb.home):
        cached = kb.manifest()
        if cached and not force:
            return cached
        return _build(kb, helm, parallelism or max(1, min(os.cpu_count() or 1, 4)), echo)


def _build(kb: KueueBuild, helm: Path, parallelism: int, echo: bool) -> KueueManifest:
    env = build.go_env(parallelism)
    started = time.monotonic()
    if echo:
        print(f"building Kueue {kb.version} into {kb.home} (this happens once)", flush=True)
    work = kb.home / "work"
    work.mkdir(parents=True, exist_ok=True)
    info = build.module_info(MODULE, kb.version, env, work)
    build.write_wrapper(work, "kueue", require={MODULE: kb.version}, replace={})
    build.build_packages(work, [COMMAND], kb.version, kb.binary, ldflags(kb.version), env, "kueue")
    kb.upstream.write_text(render_chart(helm, Path(info["Dir"]) / CHART))
    seconds = round(time.monotonic() - started, 1)
    manifest = KueueManifest(
        version=kb.version,
        binary=str(kb.binary),
        upstream=str(kb.upstream),
        build_seconds=seconds,
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    manifest.save(kb.manifest_path)
    log.info("built", step="kueue", seconds=seconds)
    if echo:
        print(f"  kueue: {seconds:.0f}s", flush=True)
    return manifest

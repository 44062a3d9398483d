"""The Prometheus Operator's CRDs (monitoring.coreos.com/v1), pinned, for validating the chart's monitoring objects.

The chart renders a ServiceMonitor, a PodMonitor and a PrometheusRule. ``helm lint`` and promtool
say nothing about whether the Prometheus Operator accepts them; only its CRD schemas do. The tests
install those CRDs into the test cluster and apply the rendered objects for real.

The CRDs come from the Go module proxy (reachable wherever the control plane is built), as the
module zip of one pinned release. The checksum database does not serve this module everywhere, so
the zip's SHA-256 is pinned here instead and a mismatch is refused. Only the three CRD files are
extracted, once per machine, into the cache the test cluster's binaries use; later calls read the
cache and touch no network.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

from kubenas.core.errors import KubenasError
from kubenas_dev.cluster.build import cache_root

MODULE = "github.com/prometheus-operator/prometheus-operator"
#: The release whose CRDs the chart is checked against; bump it together with ZIP_SHA256.
VERSION = "v0.86.1"
#: SHA-256 of the proxy's ``@v/<VERSION>.zip`` (4,265,090 bytes), computed from the download.
ZIP_SHA256 = "5719523fcdde4f364bfbed8daa242c2105fc00350e591f1744b227f9bc224118"
DEFAULT_PROXY = "https://proxy.golang.org"
GROUP = "monitoring.coreos.com"
#: Plural resource names of the CRDs the chart's objects need.
RESOURCES = ("servicemonitors", "podmonitors", "prometheusrules")
CRD_DIR = "example/prometheus-operator-crd"


class PromOperatorError(KubenasError):
    """The Prometheus Operator's CRDs could not be obtained."""


class DownloadError(PromOperatorError):
    """The module zip could not be fetched from ``url``."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot download {url}: {reason}")
        self.url = url
        self.reason = reason


class ChecksumMismatch(PromOperatorError):
    """The zip served at ``url`` is not the pinned one: nothing from it is used."""

    def __init__(self, url: str, expected: str, actual: str) -> None:
        super().__init__(f"{url}: SHA-256 {actual} does not match the pinned {expected}; refusing it")
        self.url = url
        self.expected = expected
        self.actual = actual


class MissingMember(PromOperatorError):
    """The verified zip lacks a CRD file: the pinned version and the member names disagree."""

    def __init__(self, url: str, member: str) -> None:
        super().__init__(f"{url} has no {member}")
        self.url = url
        self.member = member


def proxy_base(goproxy: str | None) -> str:
    """The proxy to ask: the first ``$GOPROXY`` entry when it is an https URL, else proxy.golang.org.

    ``GOPROXY`` is a list separated by ``,`` or ``|`` whose entries may also be ``direct`` or
    ``off``; only the first entry is honoured (as the go command tries it first), and only over
    https, so a plain-http mirror cannot silently serve the bytes (they are hash-checked anyway).
    """
    first = re.split(r"[,|]", goproxy or "", maxsplit=1)[0].strip()
    return first.rstrip("/") if first.startswith("https://") else DEFAULT_PROXY


def escape_module_path(path: str) -> str:
    """The proxy protocol's case encoding: each upper-case letter becomes ``!`` and its lower case."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group().lower(), path)


def zip_url(base: str, module: str = MODULE, version: str = VERSION) -> str:
    """``<base>/<module>/@v/<version>.zip`` (the Go module proxy protocol)."""
    return f"{base.rstrip('/')}/{escape_module_path(module)}/@v/{escape_module_path(version)}.zip"


def crd_file_name(resource: str) -> str:
    """The file name of one CRD in the repository, e.g. ``monitoring.coreos.com_servicemonitors.yaml``."""
    return f"{GROUP}_{resource}.yaml"


def member_names(module: str = MODULE, version: str = VERSION) -> dict[str, str]:
    """Each resource's path inside the module zip, whose entries are prefixed with ``<module>@<version>/``."""
    return {r: f"{module}@{version}/{CRD_DIR}/{crd_file_name(r)}" for r in RESOURCES}


def cache_dir(root: Path | None = None, version: str = VERSION) -> Path:
    """Where the extracted CRDs of one version live: ``<cache>/prometheus-operator-<version>/crds``."""
    return (root or cache_root()) / f"prometheus-operator-{version}" / "crds"


def _download(url: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bytes(response.read())
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(url, str(getattr(err, "reason", err))) from err


def verified_zip(data: bytes, url: str, expected: str = ZIP_SHA256) -> zipfile.ZipFile:
    """The zip, once its SHA-256 is the pinned one; :class:`ChecksumMismatch` otherwise."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ChecksumMismatch(url, expected, actual)
    return zipfile.ZipFile(io.BytesIO(data))


def _write_atomically(path: Path, data: bytes) -> None:
    """A reader (another test run) sees the whole file or none: write beside it, then rename."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as fh:
        fh.write(data)
    os.chmod(fh.name, 0o644)  # a temporary file is private; the cache is readable like the binaries beside it
    os.replace(fh.name, path)


def crd_paths(
    *,
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
    fetch: Callable[[str], bytes] = _download,
    expected_sha256: str = ZIP_SHA256,
) -> dict[str, Path]:
    """Each resource's CRD file in the cache, downloaded and verified on the first call only.

    ``environ``, ``fetch`` and ``expected_sha256`` exist so the unit tests run without a network.
    """
    directory = cache_dir(root)
    paths = {r: directory / crd_file_name(r) for r in RESOURCES}
    if all(p.is_file() for p in paths.values()):
        return paths
    url = zip_url(proxy_base((os.environ if environ is None else environ).get("GOPROXY")))
    with verified_zip(fetch(url), url, expected_sha256) as archive:
        members = member_names()
        missing = sorted(set(members.values()) - set(archive.namelist()))
        if missing:
            raise MissingMember(url, missing[0])
        directory.mkdir(parents=True, exist_ok=True)
        for resource, member in members.items():
            _write_atomically(paths[resource], archive.read(member))
    return paths

"""Fetching the pinned Prometheus Operator CRDs: the proxy URL, the zip's members, the hash check and
the cache. No network: a fake ``fetch`` serves an in-memory zip."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from kubenas_dev.monitoring import promoperator as po

PREFIX = "github.com/prometheus-operator/prometheus-operator@v0.86.1/"


@pytest.mark.parametrize(
    ("goproxy", "expected"),
    [
        (None, "https://proxy.golang.org"),
        ("", "https://proxy.golang.org"),
        ("direct", "https://proxy.golang.org"),
        ("off", "https://proxy.golang.org"),
        ("https://goproxy.example/", "https://goproxy.example"),
        ("https://goproxy.example/mirror,direct", "https://goproxy.example/mirror"),
        (" https://a.example | https://b.example", "https://a.example"),
        ("http://plain.example,https://b.example", "https://proxy.golang.org"),
        ("direct,https://b.example", "https://proxy.golang.org"),
    ],
)
def test_proxy_base_honours_only_a_leading_https_goproxy(goproxy: str | None, expected: str) -> None:
    assert po.proxy_base(goproxy) == expected


def test_zip_url_is_the_pinned_release_on_the_proxy() -> None:
    assert po.zip_url(po.proxy_base(None)) == (
        "https://proxy.golang.org/github.com/prometheus-operator/prometheus-operator/@v/v0.86.1.zip"
    )
    assert po.zip_url("https://m.example/", "github.com/BurntSushi/toml", "v1.0.0") == (
        "https://m.example/github.com/!burnt!sushi/toml/@v/v1.0.0.zip"
    )


def test_member_names_are_the_three_crds_under_the_module_prefix() -> None:
    assert po.member_names() == {
        "servicemonitors": f"{PREFIX}example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
        "podmonitors": f"{PREFIX}example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
        "prometheusrules": f"{PREFIX}example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
    }


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
        zf.writestr(f"{PREFIX}README.md", "not extracted")
    return buf.getvalue()


class FakeProxy:
    """Serves one zip and records the URLs asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return self.data


@pytest.fixture
def module_zip() -> bytes:
    return _zip({member: f"kind: CustomResourceDefinition  # {r}\n" for r, member in po.member_names().items()})


def test_crds_are_extracted_once_then_read_from_the_cache(tmp_path: Path, module_zip: bytes) -> None:
    proxy = FakeProxy(module_zip)
    sha = hashlib.sha256(module_zip).hexdigest()
    env = {"GOPROXY": "https://mirror.example,direct"}
    paths = po.crd_paths(root=tmp_path, environ=env, fetch=proxy, expected_sha256=sha)
    assert proxy.urls == ["https://mirror.example/github.com/prometheus-operator/prometheus-operator/@v/v0.86.1.zip"]
    assert set(paths) == {"servicemonitors", "podmonitors", "prometheusrules"}
    cached = tmp_path / "prometheus-operator-v0.86.1" / "crds"
    assert paths["podmonitors"] == cached / "monitoring.coreos.com_podmonitors.yaml"
    assert paths["podmonitors"].read_text() == "kind: CustomResourceDefinition  # podmonitors\n"
    assert sorted(p.name for p in paths["podmonitors"].parent.iterdir()) == sorted(p.name for p in paths.values())

    def no_network(url: str) -> bytes:
        raise AssertionError(f"the cache should have answered, not {url}")

    assert po.crd_paths(root=tmp_path, environ=env, fetch=no_network, expected_sha256=sha) == paths


def test_a_zip_with_another_hash_is_refused_and_nothing_is_written(tmp_path: Path, module_zip: bytes) -> None:
    with pytest.raises(po.ChecksumMismatch) as caught:
        po.crd_paths(root=tmp_path, environ={}, fetch=FakeProxy(module_zip))
    err = caught.value
    assert err.url == po.zip_url(po.DEFAULT_PROXY)
    assert err.expected == po.ZIP_SHA256 and err.actual == hashlib.sha256(module_zip).hexdigest()
    for part in (err.url, err.expected, err.actual):
        assert part in str(err)
    assert not tmp_path.joinpath("prometheus-operator-v0.86.1").exists()


def test_a_zip_without_a_crd_is_refused(tmp_path: Path) -> None:
    members = po.member_names()
    data = _zip({members["servicemonitors"]: "x", members["podmonitors"]: "y"})
    with pytest.raises(po.MissingMember, match=r"monitoring\.coreos\.com_prometheusrules\.yaml"):
        po.crd_paths(root=tmp_path, environ={}, fetch=FakeProxy(data), expected_sha256=hashlib.sha256(data).hexdigest())
    assert not po.cache_dir(tmp_path).joinpath("monitoring.coreos.com_servicemonitors.yaml").exists()

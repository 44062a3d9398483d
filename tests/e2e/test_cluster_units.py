"""The cluster code's pure parts, without a cluster: go.mod parsing, env and path mapping."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from kubenas_dev.cluster.agent.spec import ConfigError, Lookups, PathMap, expand, materialize_volumes, process_spec
from kubenas_dev.cluster.build import local_replaces, sibling_pins
from kubenas_dev.cluster.client import assert_loopback
from kubenas_dev.cluster.errors import DevClusterError
from kubenas_dev.cluster.nodes import parse_node_option

GOMOD = """module go.etcd.io/etcd/server/v3

require (
\tgo.etcd.io/etcd/api/v3 v3.5.35
\tgo.etcd.io/etcd/client/v2 v2.305.35 // indirect
\tk8s.io/api v0.0.0
)

require github.com/x/y v1.2.3

replace (
\tgo.etcd.io/etcd/api/v3 => ../api
\tgo.etcd.io/etcd/client/v2 => ../client/v2
\tk8s.io/api => ./staging/src/k8s.io/api
\tgo.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
\tgithub.com/a/b => github.com/c/b v1.0.0
)

replace k8s.io/single => ./staging/src/k8s.io/single
"""


def test_wrapper_pins_every_local_replace() -> None:
    assert local_replaces(GOMOD) == [
        "go.etcd.io/etcd/api/v3",
        "go.etcd.io/etcd/client/v2",
        "k8s.io/api",
        "k8s.io/single",
    ]
    assert sibling_pins(GOMOD, fallback="v0.32.2") == {
        "go.etcd.io/etcd/api/v3": "v3.5.35",
        "go.etcd.io/etcd/client/v2": "v2.305.35",  # its own version line, not the server's
        "k8s.io/api": "v0.32.2",  # v0.0.0 placeholder -> the matching staging release
        "k8s.io/single": "v0.32.2",
    }


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-two-$(C)-$(A)"


def test_path_map_rewrites_paths_and_flags() -> None:
    paths = PathMap(
        {"/data": Path("/host/v/data"), "/data/sub": Path("/host/other"), "/dev/termination-log": Path("/h/t")}
    )
    assert paths.rewrite("/data") == "/host/v/data"
    assert paths.rewrite("/data/x.csv") == "/host/v/data/x.csv"
    assert paths.rewrite("/data/sub/y") == "/host/other/y"  # longest prefix wins
    assert paths.rewrite("--out=/dev/termination-log") == "--out=/h/t"
    assert paths.rewrite("/database") == "/database"
    assert paths.rewrite("plain") == "plain"


def _lookups(secrets: dict[str, Any], maps: dict[str, Any]) -> Lookups:
    return Lookups(
        secret=lambda ns, name: secrets.get(name),
        config_map=lambda ns, name: maps.get(name),
        token=lambda pod, proj: "header.payload.sig",
    )


def test_process_spec_maps_env_volumes_and_token(tmp_path: Path) -> None:
    secret = {"data": {"pw": base64.b64encode(b"s3cret").decode()}}
    lookups = _lookups({"creds": secret}, {"conf": {"data": {"mode": "fast"}}})
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "0123456789", "labels": {"app": "x"}},
        "spec": {
            "nodeName": "node-cpu-0",
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {
                    "name": "sa",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"path": "token"}},
                            {"configMap": {"name": "conf", "items": [{"key": "mode", "path": "ca.crt"}]}},
                        ]
                    },
                },
            ],
        },
    }
    container = {
        "name": "main",
        "command": ["python", "-c", "pass"],
        "args": ["--out=/scratch/o", "$(MODE)"],
        "env": [
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "mode"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pw"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "RESULT", "value": "/dev/termination-log"},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        ],
        "resources": {"limits": {"memory": "256Mi"}},
        "volumeMounts": [
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "sa", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
        ],
    }
    volumes = materialize_volumes(pod, tmp_path, lookups, "127.20.0.1", "127.0.0.1")
    spec = process_spec(
        pod,
        container,
        pod_dir=tmp_path,
        volumes=volumes,
        lookups=lookups,
        pod_ip="127.20.0.1",
        host_ip="127.0.0.1",
        node_capacity={"cpu": "8"},
        server="https://127.0.0.1:6443",
        ca_file="/ca.crt",
        cluster_id="cid",
    )
    assert spec.argv[1:] == ["-c", "pass", f"--out={tmp_path}/volumes/scratch/o", "fast"]
    assert Path(spec.argv[0]).name.startswith("python")
    env = spec.env
    assert (env["MODE"], env["PW"], env["IP"], env["APP"], env["MEM"]) == ("fast", "s3cret", "127.20.0.1", "x", "256")
    assert env["RESULT"] == env["POD_TERMINATION_MESSAGE_PATH"] == str(spec.termination_file)
    assert env["POD_IP"] == "127.20.0.1" and env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert "tokenFile" in Path(env["KUBECONFIG"]).read_text()
    assert (tmp_path / "volumes" / "sa" / "token").read_text() == "header.payload.sig"
    assert (tmp_path / "volumes" / "sa" / "ca.crt").read_text() == "fast"


def test_missing_secret_is_a_config_error(tmp_path: Path) -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {}}
    container = {"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}
    with pytest.raises(ConfigError):
        process_spec(
            pod,
            container,
            pod_dir=tmp_path,
            volumes={},
            lookups=_lookups({}, {}),
            pod_ip="127.20.0.1",
            host_ip="127.0.0.1",
            node_capacity={},
            server="https://127.0.0.1:1",
            ca_file="/ca",
            cluster_id="c",
        )


def test_node_option_and_loopback_guard() -> None:
    node = parse_node_option("big:cpu=32,memory=64Gi,gpus=8")
    assert node.capacity()["nvidia.com/gpu"] == "8" and node.cpu == "32"
    assert_loopback("https://127.0.0.1:6443")
    assert_loopback("http://127.20.1.2:80")
    with pytest.raises(DevClusterError):
        assert_loopback("https://10.96.0.1:443")


def test_a_claim_volume_is_the_directory_of_its_bound_persistent_volume(tmp_path: Path) -> None:
    host = tmp_path / "pv-dir"
    volumes = {"store": {"metadata": {"name": "pv-1"}, "spec": {"hostPath": {"path": str(host)}}}}
    lookups = Lookups(
        secret=lambda ns, name: None,
        config_map=lambda ns, name: None,
        token=lambda pod, proj: "",
        volume_of_claim=lambda ns, name: volumes.get(name),
    )
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {"volumes": [{"name": "out", "persistentVolumeClaim": {"claimName": "store"}}]},
    }
    assert materialize_volumes(pod, tmp_path / "pod", lookups, "127.0.0.2", "127.0.0.1") == {"out": host}
    assert host.is_dir()  # created on first use, as DirectoryOrCreate would
    pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = "unbound"
    with pytest.raises(ConfigError, match="not bound"):  # the pod waits, as a kubelet's would
        materialize_volumes(pod, tmp_path / "pod", lookups, "127.0.0.2", "127.0.0.1")

"""Turn a container spec into a host process: environment, volumes, paths, argv, working dir.

Pods here have no image and no mount namespace, so container paths are *mapped*:

* every volume gets a host directory under the pod's directory (``emptyDir`` empty; ``configMap``,
  ``secret``, ``downwardAPI`` and ``projected`` filled with their files; ``hostPath`` is itself; a
  ``persistentVolumeClaim`` is the directory of the PersistentVolume the controller-manager bound it
  to, a ``hostPath`` or ``local`` one, so what one pod writes there the next one reads);
* the terminationMessagePath (``/dev/termination-log`` by default) becomes a host file;
* a string in ``command``, ``args``, an env value or ``workingDir`` that *is* one of those container
  paths, starts with one followed by ``/``, or is ``--flag=<such a path>`` is rewritten to the
  host path. So a trainer told ``RESULT_FILE=/dev/termination-log`` by its pod spec writes where
  the agent reads the termination message.

The process also gets ``POD_IP`` (the pod's loopback IP, to bind to), ``POD_TERMINATION_MESSAGE_PATH``
(the mapped file), ``KUBERNETES_SERVICE_HOST``/``PORT`` pointing at the loopback API server and, if
the pod mounts a service-account token, ``KUBECONFIG`` naming a kubeconfig that uses that token
(in-cluster loaders look for fixed paths under /var/run/secrets that do not exist on the host; the
usual fallback to ``KUBECONFIG`` then finds the pod's own identity).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

from kubenas_dev.cluster.pki import write_token_kubeconfig
from kubenas_dev.cluster.state import MARKER_ENV

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

Obj = dict[str, Any]


class ConfigError(Exception):
    """A referenced Secret/ConfigMap/key is missing: the kubelet's CreateContainerConfigError."""

    def __init__(self, message: str, obj: str = "") -> None:
        super().__init__(message)
        self.obj = obj


@dataclass
class Lookups:
    """Reads the objects a pod refers to; injected so tests can run the mapping without a server."""

    secret: Callable[[str, str], Obj | None]
    config_map: Callable[[str, str], Obj | None]
    token: Callable[[Obj, Obj], str]  # (pod, serviceAccountToken projection) -> token
    #: (namespace, claim name) -> the bound PersistentVolume, or None while the claim is missing or unbound
    volume_of_claim: Callable[[str, str], Obj | None] = lambda ns, name: None


def claim_directory(ns: str, claim: Obj, lookups: Lookups) -> Path:
    """The host directory of a pod's ``persistentVolumeClaim`` volume: its bound PV's hostPath or local path.

    A missing or unbound claim is the kubelet's wait (the pod stays ContainerCreating); a PV of any
    other kind cannot be a directory here.
    """
    name = claim["claimName"]
    pv = lookups.volume_of_claim(ns, name)
    if pv is None:
        raise ConfigError(f'persistentvolumeclaim "{name}" is not bound', f"persistentvolumeclaim/{name}")
    source = pv["spec"].get("hostPath") or pv["spec"].get("local")
    if not source:
        raise ConfigError(f'persistentvolume "{pv["metadata"]["name"]}" is neither hostPath nor local', "")
    path = Path(source["path"])
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------------
# quantities (resourceFieldRef)

_SUFFIX = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}  # fmt: skip


def parse_quantity(text: str) -> Decimal:
    m = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?\d+)?)([a-zA-Z]*)", str(text).strip())
    if not m:
        raise ConfigError(f"bad quantity {text!r}")
    number, suffix = m.groups()
    return Decimal(number) * Decimal(_SUFFIX.get(suffix, 1))


# --------------------------------------------------------------------------------------------------
# field paths


def _field_value(pod: Obj, path: str, pod_ip: str, host_ip: str) -> str:
    meta = pod.get("metadata", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str(meta.get(m.group(1), {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod.get("spec", {}).get("nodeName", ""),
        "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1], {})
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ConfigError(f"unsupported fieldRef {path}")


def _resource_value(container: Obj, ref: Obj, node_capacity: dict[str, str]) -> str:
    resource = ref["resource"]  # e.g. limits.cpu
    kind, _, name = resource.partition(".")
    resources = container.get("resources", {})
    raw = resources.get(kind, {}).get(name) or resources.get("limits", {}).get(name) or node_capacity.get(name, "0")
    divisor = parse_quantity(ref.get("divisor", "1") or "1")
    value = (parse_quantity(raw) / divisor).to_integral_value(rounding=ROUND_CEILING)
    return str(int(value))


# --------------------------------------------------------------------------------------------------
# env


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names substituted, ``$$`` escapes, unknown kept."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(repl, text)


def _decode(secret: Obj, key: str) -> str | None:
    if key in secret.get("data", {}) or {}:
        return base64.b64decode(secret["data"][key]).decode(errors="replace")
    return (secret.get("stringData") or {}).get(key)


def container_env(
    pod: Obj,
    container: Obj,
    lookups: Lookups,
    pod_ip: str,
    host_ip: str,
    node_capacity: dict[str, str],
) -> dict[str, str]:
    """The env the container spec asks for: envFrom, then env (with $(VAR) expansion), in order."""
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []) or []:
        prefix = source.get("prefix", "")
        is_secret = "secretRef" in source
        if not is_secret and "configMapRef" not in source:
            continue
        ref = source["secretRef" if is_secret else "configMapRef"]
        kind = "secret" if is_secret else "configmap"
        obj = (lookups.secret if is_secret else lookups.config_map)(ns, ref["name"])
        if obj is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{kind} "{ref["name"]}" not found', f"{kind}/{ref['name']}")
        data = obj.get("data") or {}
        env.update({prefix + k: (_decode(obj, k) or "") if is_secret else v for k, v in data.items()})
    for var in container.get("env", []) or []:
        name = var["name"]
        if "value" in var:
            env[name] = expand(var.get("value") or "", env)
            continue
        source = var.get("valueFrom")
        if not source:
            env[name] = ""
            continue
        value = _env_from_source(pod, container, source, lookups, pod_ip, host_ip, node_capacity)
        if value is not None:
            env[name] = value
    return env


def _env_from_source(
    pod: Obj,
    container: Obj,
    source: Obj,
    lookups: Lookups,
    pod_ip: str,
    host_ip: str,
    node_capacity: dict[str, str],
) -> str | None:
    ns = pod["metadata"]["namespace"]
    if "fieldRef" in source:
        return _field_value(pod, source["fieldRef"]["fieldPath"], pod_ip, host_ip)
    if "resourceFieldRef" in source:
        return _resource_value(container, source["resourceFieldRef"], node_capacity)
    for kind, fetch in (("secretKeyRef", lookups.secret), ("configMapKeyRef", lookups.config_map)):
        if kind not in source:
            continue
        ref = source[kind]
        obj = fetch(ns, ref["name"])
        label = "secret" if kind == "secretKeyRef" else "configmap"
        if obj is None:
            if ref.get("optional"):
                return None
            raise ConfigError(f'{label} "{ref["name"]}" not found', f"{label}/{ref['name']}")
        value = _decode(obj, ref["key"]) if kind == "secretKeyRef" else (obj.get("data") or {}).get(ref["key"])
        if value is None:
            if ref.get("optional"):
                return None
            raise ConfigError(f"couldn't find key {ref['key']} in {label} {ns}/{ref['name']}", f"{label}/{ref['name']}")
        return value
    raise ConfigError(f"unsupported env source {sorted(source)}")


# --------------------------------------------------------------------------------------------------
# volumes


def _write_items(target: Path, data: dict[str, str], items: list[Obj] | None) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if items:
        for item in items:
            if item["key"] in data:
                dest = target / item["path"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(data[item["key"]])
    else:
        for key, value in data.items():
            (target / key).write_text(value)


def _secret_data(obj: Obj) -> dict[str, str]:
    return {k: _decode(obj, k) or "" for k in {**(obj.get("data") or {}), **(obj.get("stringData") or {})}}


def _fill_from_object(target: Path, ns: str, lookups: Lookups, kind: str, ref: Obj, name: str) -> None:
    """Write a ConfigMap's or Secret's keys (or the listed ``items``) as files into ``target``."""
    fetch = lookups.config_map if kind == "configmap" else lookups.secret
    obj = fetch(ns, name)
    if obj is None:
        if ref.get("optional"):
            return
        raise ConfigError(f'{kind} "{name}" not found', f"{kind}/{name}")
    data = (obj.get("data") or {}) if kind == "configmap" else _secret_data(obj)
    _write_items(target, data, ref.get("items"))


def materialize_volumes(pod: Obj, pod_dir: Path, lookups: Lookups, pod_ip: str, host_ip: str) -> dict[str, Path]:
    """Create a host directory per pod volume; return ``volume name -> host path``."""
    ns = pod["metadata"]["namespace"]
    result: dict[str, Path] = {}
    for vol in pod["spec"].get("volumes", []) or []:
        name = vol["name"]
        if "hostPath" in vol:
            result[name] = Path(vol["hostPath"]["path"])
            continue
        if "persistentVolumeClaim" in vol:
            result[name] = claim_directory(ns, vol["persistentVolumeClaim"], lookups)
            continue
        target = pod_dir / "volumes" / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        result[name] = target
        if "configMap" in vol:
            _fill_from_object(target, ns, lookups, "configmap", vol["configMap"], vol["configMap"]["name"])
        elif "secret" in vol:
            _fill_from_object(target, ns, lookups, "secret", vol["secret"], vol["secret"]["secretName"])
        elif "downwardAPI" in vol:
            _downward(pod, target, vol["downwardAPI"].get("items", []), pod_ip, host_ip)
        elif "projected" in vol:
            _projected(pod, target, vol["projected"].get("sources", []), lookups, pod_ip, host_ip)
        # emptyDir and anything else: an empty directory.
    return result


def _downward(pod: Obj, target: Path, items: list[Obj], pod_ip: str, host_ip: str) -> None:
    for item in items:
        if "fieldRef" in item:
            dest = target / item["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(_field_value(pod, item["fieldRef"]["fieldPath"], pod_ip, host_ip))


def _projected(pod: Obj, target: Path, sources: list[Obj], lookups: Lookups, pod_ip: str, host_ip: str) -> None:
    ns = pod["metadata"]["namespace"]
    for source in sources:
        if "serviceAccountToken" in source:
            proj = source["serviceAccountToken"]
            (target / proj.get("path", "token")).write_text(lookups.token(pod, proj))
        elif "configMap" in source:
            _fill_from_object(target, ns, lookups, "configmap", source["configMap"], source["configMap"]["name"])
        elif "secret" in source:
            _fill_from_object(target, ns, lookups, "secret", source["secret"], source["secret"]["name"])
        elif "downwardAPI" in source:
            _downward(pod, target, source["downwardAPI"].get("items", []), pod_ip, host_ip)


# --------------------------------------------------------------------------------------------------
# path mapping


class PathMap:
    """Container path prefix -> host path, longest prefix first."""

    def __init__(self, pairs: dict[str, Path]) -> None:
        self.pairs = sorted(((p.rstrip("/") or "/", h) for p, h in pairs.items()), key=lambda x: -len(x[0]))

    def map_path(self, path: str) -> str | None:
        for prefix, host in self.pairs:
            if path == prefix:
                return str(host)
            if path.startswith(prefix + "/"):
                return str(host) + path[len(prefix) :]
        return None

    def rewrite(self, value: str) -> str:
        """Map a whole value that is a container path, or the path part of ``--flag=<path>``."""
        mapped = self.map_path(value)
        if mapped is not None:
            return mapped
        flag, eq, rest = value.partition("=")
        if eq and rest.startswith("/"):
            mapped = self.map_path(rest)
            if mapped is not None:
                return f"{flag}={mapped}"
        return value


@dataclass
class ProcessSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    termination_file: Path
    log_dir: Path


def process_spec(
    pod: Obj,
    container: Obj,
    *,
    pod_dir: Path,
    volumes: dict[str, Path],
    lookups: Lookups,
    pod_ip: str,
    host_ip: str,
    node_capacity: dict[str, str],
    server: str,
    ca_file: str,
    cluster_id: str,
) -> ProcessSpec:
    """Everything needed to start ``container`` of ``pod`` as a host process."""
    cdir = pod_dir / "containers" / container["name"]
    cdir.mkdir(parents=True, exist_ok=True)
    termination_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
    termination_file = cdir / "termination-log"
    mounts: dict[str, Path] = {termination_path: termination_file}
    for mount in container.get("volumeMounts", []) or []:
        host = volumes.get(mount["name"])
        if host is not None:
            mounts[mount["mountPath"]] = host / mount["subPath"] if mount.get("subPath") else host
    paths = PathMap(mounts)

    spec_env = container_env(pod, container, lookups, pod_ip, host_ip, node_capacity)
    env = base_env(pod, pod_ip, server, cluster_id, pod_dir)
    env["POD_TERMINATION_MESSAGE_PATH"] = str(termination_file)
    sa_dir = paths.map_path(SA_MOUNT)
    if sa_dir and Path(sa_dir, "token").exists() and "KUBECONFIG" not in spec_env:
        ns = pod["metadata"]["namespace"]
        env["KUBECONFIG"] = str(
            write_token_kubeconfig(pod_dir / "kubeconfig", server, Path(ca_file), Path(sa_dir, "token"), ns)
        )
    env.update({k: paths.rewrite(v) for k, v in spec_env.items()})

    command = [expand(c, spec_env) for c in container.get("command", []) or []]
    args = [expand(a, spec_env) for a in container.get("args", []) or []]
    # No image, so no ENTRYPOINT/CMD: `command` + `args` is the argv; `args` alone is the argv.
    argv = [paths.rewrite(a) for a in command + args]
    if not argv:
        raise ConfigError(f"container {container['name']} has neither command nor args (no image to run here)")
    argv[0] = _resolve_executable(argv[0], env["PATH"])

    working_dir = container.get("workingDir")
    if working_dir:
        mapped = paths.map_path(working_dir)
        cwd = Path(mapped) if mapped else Path(working_dir)
        if not cwd.is_dir():
            cwd = pod_dir / "root" / working_dir.lstrip("/")  # the image's directory, recreated empty
    else:
        cwd = cdir
    cwd.mkdir(parents=True, exist_ok=True)
    return ProcessSpec(argv=argv, env=env, cwd=cwd, termination_file=termination_file, log_dir=cdir)


def base_env(pod: Obj, pod_ip: str, server: str, cluster_id: str, pod_dir: Path) -> dict[str, str]:
    """What every pod process gets regardless of its spec (not the agent's own environment)."""
    # The python that runs the agent comes first, so `python` in a command is the project's python.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
    tmp = pod_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    host, _, port = server.removeprefix("https://").rpartition(":")
    # ... and the project's code: a checkout run through PYTHONPATH gives its pods the same tree
    code = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    return {
        **code,
        "PATH": path,
        "HOME": os.environ.get("HOME", str(pod_dir)),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TMPDIR": str(tmp),
        "HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"],
        "POD_IP": pod_ip,
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "NO_PROXY": "127.0.0.0/8,localhost",
        MARKER_ENV: cluster_id,
    }


def _resolve_executable(name: str, path: str) -> str:
    if "/" in name:
        return name
    return shutil.which(name, path=path) or name

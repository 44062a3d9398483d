"""Build the control-plane binaries from the Go module proxy, once per machine.

No Docker, no kind and no envtest download is available where the tests run, but the Go module
proxy is. ``k8s.io/kubernetes`` and etcd's server module cannot be ``go install``-ed because their
go.mod files ``replace`` sibling modules with local paths (``./staging/src/k8s.io/...``,
``../api``). The workaround is a throw-away *wrapper module* that requires the real module and
replaces each of those siblings with its published version. The replace list is read from the
upstream go.mod itself, so a version bump never needs a hand-maintained list.

Binaries land in ``<cache>/<version key>/bin`` next to a ``manifest.json``; a build is skipped when
that manifest and every binary exist, so the 20-40 minute cold build happens once per machine and
per version set. The Go module and build caches are the user's defaults, so a version bump
recompiles only what changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kubenas_dev.cluster.errors import BuildError
from kubenas_dev.cluster.log import get_logger
from kubenas_dev.cluster.versions import VERSIONS, Versions

log = get_logger("kubenas_dev.cluster.build")

K8S_SERVER_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
MANIFEST = "manifest.json"


def cache_root() -> Path:
    """``$KUBENAS_CACHE_DIR`` or ``~/.cache/kubenas``: overridable so a cold build can be measured."""
    env = os.environ.get("KUBENAS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kubenas"


@dataclass
class Manifest:
    """What a finished build holds; its presence is the "already built" marker."""

    versions: dict[str, str]
    go_version: str
    binaries: dict[str, str]
    kubectl: str
    kubectl_source: str
    build_seconds: float
    step_seconds: dict[str, float] = field(default_factory=dict)
    built_at: str = ""

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)


@dataclass(frozen=True)
class Toolchain:
    """Where the built binaries live for one version set."""

    versions: Versions
    root: Path

    @property
    def home(self) -> Path:
        return self.root / self.versions.key

    @property
    def bin_dir(self) -> Path:
        return self.home / "bin"

    @property
    def work_dir(self) -> Path:
        return self.home / "work"

    @property
    def manifest_path(self) -> Path:
        return self.home / MANIFEST

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def required(self) -> tuple[str, ...]:
        return (*K8S_SERVER_BINARIES, "etcd", "helm", "kubectl")

    def manifest(self) -> Manifest | None:
        """The manifest when the build is complete, else ``None``."""
        if not self.manifest_path.exists():
            return None
        if not all(self.binary(name).exists() for name in self.required()):
            return None
        return Manifest.load(self.manifest_path)


def toolchain(versions: Versions = VERSIONS) -> Toolchain:
    return Toolchain(versions=versions, root=cache_root())


def built_helm() -> Path | None:
    """The helm of ``kubenas cluster build`` when it is built (the ``kubenas.helm`` entry point)."""
    helm = toolchain().binary("helm")
    return helm if helm.exists() else None


# --------------------------------------------------------------------------------------------------
# go invocations


def go_binary() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not found:
        raise BuildError("go", "no Go toolchain on PATH (needed to build the control plane)")
    return found


def go_env(parallelism: int) -> dict[str, str]:
    """Environment for every go call: local toolchain only, bounded parallelism, module mode."""
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"  # never fetch another toolchain behind the user's back
    env["GOFLAGS"] = f"-buildvcs=false -mod=mod -p={parallelism}"
    env["GOMAXPROCS"] = str(parallelism)
    env["CGO_ENABLED"] = "0"  # static binaries; no C toolchain needed
    env.setdefault("GOPROXY", "https://proxy.golang.org")
    # GONOSUMDB stays default: the checksum database is served by the same proxy host.
    return env


def run_go(args: Sequence[str], cwd: Path, env: dict[str, str], step: str) -> str:
    cmd = [go_binary(), *args]
    log.info("go", step=step, subcommand=args[0], target=args[-1])
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(step, f"`go {' '.join(args)}` failed:\n{proc.stderr[-4000:]}")
    return proc.stdout


def module_info(module: str, version: str, env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Download ``module@version`` through the proxy; return ``go mod download -json``'s record."""
    out = run_go(["mod", "download", "-json", f"{module}@{version}"], cwd, env, f"download {module}")
    info: dict[str, str] = json.loads(out)
    if info.get("Error"):
        raise BuildError(f"download {module}", info["Error"])
    return info


def directive_lines(gomod: str, keyword: str) -> Iterator[str]:
    """Lines of every ``keyword`` directive in ``gomod``, block form or single line, comments cut."""
    in_block = False
    for raw in gomod.splitlines():
        line = raw.split("//", 1)[0].rstrip()
        if line.startswith(f"{keyword} ("):
            in_block = True
        elif in_block and line.strip() == ")":
            in_block = False
        elif in_block:
            yield line.strip()
        elif line.startswith(f"{keyword} "):
            yield line[len(keyword) :].strip()


_REPLACE_LINE = re.compile(r"^(\S+)(?:\s+\S+)?\s+=>\s+(\.\.?/\S+)$")
_REQUIRE_LINE = re.compile(r"^(\S+)\s+(v\S+)$")


def local_replaces(gomod: str) -> list[str]:
    """Modules that ``gomod`` replaces with a local path (the ones a wrapper must re-pin)."""
    matches = (_REPLACE_LINE.match(line) for line in directive_lines(gomod, "replace"))
    return [m.group(1) for m in matches if m and "FORBIDDEN" not in m.group(2)]


def required_versions(gomod: str) -> dict[str, str]:
    """``module -> version`` of every require line in ``gomod``."""
    matches = (_REQUIRE_LINE.match(line) for line in directive_lines(gomod, "require"))
    return {m.group(1): m.group(2) for m in matches if m}


def sibling_pins(gomod: str, fallback: str) -> dict[str, str]:
    """Published versions for the modules ``gomod`` replaces locally.

    etcd requires its siblings at their real versions (``client/v2 v2.305.x``), Kubernetes at the
    placeholder ``v0.0.0``; the placeholder maps to ``fallback`` (the matching ``v0.Y.Z``).
    """
    required = required_versions(gomod)
    pins = {}
    for module in local_replaces(gomod):
        version = required.get(module, "v0.0.0")
        pins[module] = fallback if version == "v0.0.0" else version
    return pins


def write_wrapper(
    workdir: Path,
    name: str,
    require: dict[str, str],
    replace: dict[str, str],
) -> None:
    """A wrapper module: require the real module, pin its local-path siblings to published versions."""
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [f"module kubenas.local/build/{name}", "", "go 1.23", ""]
    lines += ["require ("] + [f"\t{m} {v}" for m, v in sorted(require.items())] + [")", ""]
    if replace:
        # A target starting with "./" is a local directory, anything else a published version.
        pins = [f"\t{m} => {v}" if v.startswith("./") else f"\t{m} => {m} {v}" for m, v in sorted(replace.items())]
        lines += ["replace (", *pins, ")", ""]
    (workdir / "go.mod").write_text("\n".join(lines))
    # The packages we build are `main` packages, which cannot be imported; `go build <pkg>` on a
    # module dependency works from any module that requires it.
    doc = f"// Package {name} only pins versions for building binaries.\npackage {name}\n"
    (workdir / "doc.go").write_text(doc)


def build_packages(
    workdir: Path,
    packages: Sequence[str],
    version: str,
    output: Path,
    ldflags: str,
    env: dict[str, str],
    step: str,
) -> None:
    """``go build`` ``packages`` into ``output``: a directory for several, the file for one."""
    many = len(packages) > 1
    (output if many else output.parent).mkdir(parents=True, exist_ok=True)
    target = str(output) + "/" if many else str(output)
    # `go get pkg@version` records every module the packages need in the wrapper's go.mod/go.sum.
    # The explicit version matters: a bare `go get pkg` means @upgrade and would leave the pin.
    run_go(["get", *(f"{p}@{version}" for p in packages)], workdir, env, f"{step}: resolve")
    run_go(
        ["build", "-trimpath", f"-ldflags=-s -w {ldflags}".strip(), "-o", target, *packages],
        workdir,
        env,
        f"{step}: compile",
    )


# --------------------------------------------------------------------------------------------------
# the three products


def k8s_ldflags(v: Versions) -> str:
    major, minor, _ = v.kubernetes.lstrip("v").split(".")
    fields = {
        "gitVersion": v.kubernetes,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "gitCommit": "0000000000000000000000000000000000000000",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{k}={val}" for k, val in fields.items()]
    return " ".join(flags)


# Upstream refuses loopback addresses in Endpoints and EndpointSlices (and Service externalIPs):
# "nonsensical" on a real network, but on this cluster every pod IP is 127.x.y.z by design, since
# nothing here may leave loopback. This is the one change to upstream code. `go build -overlay`
# may not touch files in the module cache, so the module is copied next to the wrapper (sources
# only, ~100 MB) and the wrapper replaces k8s.io/kubernetes with that copy.
LOOPBACK_CHECK = (
    "\tif ip.IsLoopback() {\n"
    "\t\tallErrs = append(allErrs, field.Invalid(fldPath, ipAddress, "
    '"may not be in the loopback range (127.0.0.0/8, ::1/128)"))\n'
    "\t}\n"
)
LOOPBACK_PATCH = "\t// kubenas dev cluster: pods run on loopback IPs, so loopback endpoints are allowed.\n"
VALIDATION_GO = "pkg/apis/core/validation/validation.go"


def patched_kubernetes(module_dir: Path, work: Path) -> Path:
    """A copy of the k8s.io/kubernetes module with the loopback check removed; reused if present."""
    dest = work / "kubernetes-src"
    done = dest / ".kubenas-patched"
    if done.exists():
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    original = (module_dir / VALIDATION_GO).read_text()
    if original.count(LOOPBACK_CHECK) != 1:
        raise BuildError("kubernetes: patch", f"loopback check not found exactly once in {VALIDATION_GO}")
    shutil.copytree(module_dir, dest, ignore=shutil.ignore_patterns("*_test.go", "testdata", ".git*"))
    for path in dest.rglob("*"):  # the module cache is read-only; the copy must be writable
        path.chmod(0o755 if path.is_dir() else 0o644)
    dest.chmod(0o755)
    (dest / VALIDATION_GO).write_text(original.replace(LOOPBACK_CHECK, LOOPBACK_PATCH))
    done.write_text("loopback endpoints allowed\n")
    return dest


def build_kubernetes(tc: Toolchain, env: dict[str, str], binaries: Sequence[str]) -> None:
    v = tc.versions
    work = tc.work_dir / "kubernetes"
    work.mkdir(parents=True, exist_ok=True)
    info = module_info("k8s.io/kubernetes", v.kubernetes, env, work)
    gomod = Path(info["GoMod"]).read_text()
    staging = sibling_pins(gomod, fallback="v0." + v.kubernetes.lstrip("v").split(".", 1)[1])
    if not staging:
        raise BuildError("kubernetes", "found no staging replaces in k8s.io/kubernetes go.mod")
    src = patched_kubernetes(Path(info["Dir"]), work)
    write_wrapper(
        work,
        "kubernetes",
        require={"k8s.io/kubernetes": v.kubernetes},
        replace={**staging, "k8s.io/kubernetes": f"./{src.name}"},
    )
    pkgs = [f"k8s.io/kubernetes/cmd/{b}" for b in binaries]
    build_packages(work, pkgs, v.kubernetes, tc.bin_dir, k8s_ldflags(v), env, "kubernetes")


def build_etcd(tc: Toolchain, env: dict[str, str]) -> None:
    v = tc.versions
    work = tc.work_dir / "etcd"
    work.mkdir(parents=True, exist_ok=True)
    gomod = Path(module_info("go.etcd.io/etcd/server/v3", v.etcd, env, work)["GoMod"]).read_text()
    siblings = sibling_pins(gomod, fallback=v.etcd)
    write_wrapper(work, "etcd", require={"go.etcd.io/etcd/server/v3": v.etcd}, replace=siblings)
    # The server module's root package is etcd's `main`.
    build_packages(work, ["go.etcd.io/etcd/server/v3"], v.etcd, tc.binary("etcd"), "", env, "etcd")


def build_helm(tc: Toolchain, env: dict[str, str]) -> None:
    v = tc.versions
    work = tc.work_dir / "helm"
    work.mkdir(parents=True, exist_ok=True)
    write_wrapper(work, "helm", require={"helm.sh/helm/v3": v.helm}, replace={})
    ldflags = f"-X helm.sh/helm/v3/internal/version.version={v.helm}"
    build_packages(work, ["helm.sh/helm/v3/cmd/helm"], v.helm, tc.binary("helm"), ldflags, env, "helm")


# --------------------------------------------------------------------------------------------------
# kubectl: the machine's when its skew is supported


def minor_of(version: str) -> tuple[int, int]:
    m = re.match(r"v?(\d+)\.(\d+)", version)
    if not m:
        raise BuildError("kubectl", f"cannot parse version {version!r}")
    return int(m.group(1)), int(m.group(2))


def system_kubectl(server_version: str) -> Path | None:
    """The kubectl on PATH when it is within the supported ±1 minor skew of the server."""
    found = shutil.which("kubectl")
    if not found:
        return None
    proc = subprocess.run([found, "version", "--client", "-o", "json"], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    client = json.loads(proc.stdout).get("clientVersion", {}).get("gitVersion", "")
    try:
        (cmaj, cmin), (smaj, smin) = minor_of(client), minor_of(server_version)
    except BuildError:
        return None
    if cmaj == smaj and abs(cmin - smin) <= 1:
        log.info("kubectl from the machine", path=found, version=client)
        return Path(found)
    log.info("kubectl skew unsupported; building it", path=found, version=client, server=server_version)
    return None


# --------------------------------------------------------------------------------------------------
# entry point


@contextlib.contextmanager
def build_lock(home: Path) -> Iterator[None]:
    """Serialise concurrent builds into ``home`` (CI and a developer, two test runs)."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_built(
    versions: Versions = VERSIONS,
    *,
    force: bool = False,
    parallelism: int | None = None,
    echo: bool = True,
) -> Manifest:
    """Build every binary unless a complete build for ``versions`` is cached; return its manifest."""
    tc = toolchain(versions)
    cached = tc.manifest()
    if cached and not force:
        return cached
    with build_lock(tc.home):
        cached = tc.manifest()  # another process may have finished while we waited
        if cached and not force:
            return cached
        return _build(tc, parallelism or max(1, min(os.cpu_count() or 1, 4)), echo)


def _build(tc: Toolchain, parallelism: int, echo: bool) -> Manifest:
    env = go_env(parallelism)
    steps: dict[str, float] = {}
    started = time.monotonic()

    def timed(name: str, outputs: Sequence[str], fn: object, *args: object) -> None:
        if all(tc.binary(o).exists() for o in outputs):
            log.info("already built", step=name)  # a resumed build after a failed step
            steps[name] = 0.0
            return
        t0 = time.monotonic()
        fn(*args)  # type: ignore[operator]
        steps[name] = round(time.monotonic() - t0, 1)
        log.info("built", step=name, seconds=steps[name])
        if echo:
            print(f"  {name}: {steps[name]:.0f}s", flush=True)

    kubectl = system_kubectl(tc.versions.kubernetes)
    k8s_bins = list(K8S_SERVER_BINARIES) + ([] if kubectl else ["kubectl"])
    if echo:
        print(f"building {tc.versions.describe()} into {tc.home} (this happens once)", flush=True)
    timed("etcd", ["etcd"], build_etcd, tc, env)
    timed("kubernetes", k8s_bins, build_kubernetes, tc, env, k8s_bins)
    timed("helm", ["helm"], build_helm, tc, env)
    if kubectl:
        link = tc.binary("kubectl")
        link.unlink(missing_ok=True)
        link.symlink_to(kubectl)
    total = round(time.monotonic() - started, 1)
    version_out = subprocess.run([go_binary(), "version"], capture_output=True, text=True).stdout.strip()
    manifest = Manifest(
        versions=tc.versions.as_dict(),
        go_version=version_out,
        binaries={name: str(tc.binary(name)) for name in tc.required()},
        kubectl=str(kubectl or tc.binary("kubectl")),
        kubectl_source="machine" if kubectl else "built",
        build_seconds=total,
        step_seconds=steps,
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    manifest.save(tc.manifest_path)
    if echo:
        print(f"cold build took {total:.0f}s ({total / 60:.1f} min)", flush=True)
    return manifest


if __name__ == "__main__":  # pragma: no cover - `kubenas cluster build` is the supported entry
    from kubenas_dev.cluster import log as _log

    _log.configure()
    m = ensure_built()
    print(json.dumps(asdict(m), indent=2))

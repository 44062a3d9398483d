"""Import rules that keep the operator slim and the package importable."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO

OPERATOR_MODULES = ["kubenas.cli", "kubenas.operator.cli", "kubenas.operator.handlers", "kubenas.core.search"]


def test_the_operator_process_never_imports_torch() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {OPERATOR_MODULES!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_no_package_named_operator_shadows_the_stdlib() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()
    code = "import operator; print(operator.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "site-packages" not in out.stdout and str(REPO) not in out.stdout


def test_the_core_does_no_io() -> None:
    """The core reads no files, opens no sockets and starts no processes: adapters do."""
    # the HTTP client by its import: `requests` alone is also a field of a container's resources
    forbidden = ("open(", "subprocess", "socket", "import requests", "httpx", "urllib", "os.environ", "time.time(")
    offenders = []
    for path in (REPO / "operator" / "kubenas" / "core").rglob("*.py"):
        text = path.read_text()
        offenders += [f"{path.name}: {f}" for f in forbidden if f in text]
    assert offenders == []


# --- the import graph ------------------------------------------------------------------------------
# Every import counts, including those inside functions and under TYPE_CHECKING: a lazy import is
# still a dependency, and a circle hidden behind one still ties the two modules together.

RUNTIME = REPO / "operator" / "kubenas"
TRAINER = REPO / "trainer_image" / "kubenas_trainer"
DEV = REPO / "devtools" / "kubenas_dev"
#: kubenas' layers, lowest first: a module may import its own layer and those below, never above.
LAYERS = ("kubenas.api", "kubenas.core")


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name → file, for every module of the package in ``package_dir``."""
    out = {}
    for path in package_dir.rglob("*.py"):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``name`` imports (``from pkg import sub`` names the submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            subs = {f"{base}.{alias.name}" for alias in node.names}
            found.update(subs & known or {base})
    return {m for m in found if m in known and m != name}


def import_graph(*package_dirs: Path) -> dict[str, set[str]]:
    files = {n: p for d in package_dirs for n, p in module_files(d).items()}
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def layer_of(module: str) -> int:
    """0 for kubenas.api, 1 for kubenas.core, 2 for every adapter (and kubenas' own __init__)."""
    return next((i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(layer + ".")), len(LAYERS))


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_layers_import_only_downward() -> None:
    """api ← core ← adapters: the API models know nothing of the core, the core nothing of adapters."""
    graph = import_graph(RUNTIME)
    upward = sorted(f"{m} imports {d}" for m, deps in graph.items() for d in deps if layer_of(d) > layer_of(m))
    assert upward == []


def test_no_import_circles() -> None:
    assert circles(import_graph(RUNTIME, TRAINER, DEV)) == []


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]


def test_the_runtime_package_never_imports_the_development_tools() -> None:
    """The operator image and `pip install .` carry no kubenas_dev: kubenas finds its commands by entry points."""
    offenders = []
    for package_dir in (RUNTIME, TRAINER):
        for path in package_dir.rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "kubenas_dev"]
    assert offenders == []


def test_the_runtime_distribution_does_not_package_the_development_tools() -> None:
    """setuptools finds packages under operator/ and trainer_image/ only; devtools/ is its own distribution."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert set(config["tool"]["setuptools"]["packages"]["find"]["where"]) == {"operator", "trainer_image"}
    assert not list(RUNTIME.rglob("pytest_plugin.py")) and not (RUNTIME / "devcluster").exists()
    for dockerfile in (REPO / "Dockerfile", REPO / "trainer_image" / "Dockerfile"):
        assert "devtools" not in dockerfile.read_text(), dockerfile

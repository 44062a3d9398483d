"""Dependencies are declared exactly: what a module imports, its distribution declares, and no more.

Two distributions come from this repository: ``kubenas`` (pyproject.toml: the ``kubenas`` package,
which the operator image installs with the base dependencies, and ``kubenas_trainer``, which the
trainer image installs with the ``torch`` extra) and ``kubenas-dev`` (devtools/pyproject.toml: the
development tools). A fast static check reads every import; a slow one installs the base package
into a fresh virtual environment the way the operator image does and imports every module, so an
undeclared import fails here instead of in a user's install.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from importlib import metadata
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from tests.conftest import REPO

FIRST_PARTY = frozenset({"kubenas", "kubenas_trainer", "kubenas_dev"})
#: Packages that import with the base install (what the operator image carries, no torch).
BASE_PACKAGES = ("kubenas",)
#: Packages that need the torch extra to import: the trainer runs only where torch is (the trainer
#: image, ``pip install '.[torch]'``). Modules of ``kubenas`` that use an extra import it lazily.
TORCH_EXTRA_PACKAGES = ("kubenas_trainer",)
#: The ``dev`` extra lists tools the tests and the linter run (pytest, ruff, hadolint), not imports.
TOOL_EXTRAS = ("dev",)


@dataclass(frozen=True)
class Distribution:
    name: str
    pyproject: Path
    packages: tuple[Path, ...]

    def requirements(self) -> dict[str, set[str]]:
        """Extra (``""`` for the base) → normalized names of the distributions it requires."""
        project = tomllib.loads(self.pyproject.read_text())["project"]
        groups = {"": project.get("dependencies", []), **project.get("optional-dependencies", {})}
        own = {normalize(self.name), *(normalize(p) for p in FIRST_PARTY)}
        return {extra: {requirement_name(r) for r in reqs} - own for extra, reqs in groups.items()}


RUNTIME = Distribution(
    "kubenas", REPO / "pyproject.toml", (REPO / "operator" / "kubenas", REPO / "trainer_image" / "kubenas_trainer")
)
DEV = Distribution("kubenas-dev", REPO / "devtools" / "pyproject.toml", (REPO / "devtools" / "kubenas_dev",))


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return normalize(match.group(1))


@dataclass(frozen=True)
class Import:
    top: str  # the imported top-level name, e.g. "yaml"
    where: str  # the importing file, from its package folder
    module_level: bool  # False: inside a function or a class body, imported only when used


def imports(package_dir: Path) -> list[Import]:
    """Every absolute import of a non-standard-library name in the package's files."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names:
                    found.append(Import(top, str(path.relative_to(package_dir.parent)), id(node) in top_level))
    return found


@functools.cache
def installed() -> dict[str, list[str]]:
    """Top-level import name → the installed distributions providing it (a scan of every one: once)."""
    return packages_distributions()


def distributions_of(top: str) -> set[str]:
    return {normalize(d) for d in installed().get(top, [])}


@functools.cache
def pinned_by(dist: str) -> frozenset[str]:
    """What an installed distribution requires at one exact version (pydantic pins pydantic-core):
    declaring it fixes those too, so importing them directly needs no declaration of its own."""
    try:
        requirements = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return frozenset()
    return frozenset(requirement_name(r) for r in requirements if "==" in r.split(";")[0])


def undeclared(imported: list[Import], allowed: set[str]) -> list[str]:
    allowed = allowed | {p for d in allowed for p in pinned_by(d)}
    bad = []
    for imp in imported:
        if imp.top in FIRST_PARTY:
            continue
        dists = distributions_of(imp.top)
        if not dists & allowed:
            bad.append(f"{imp.where}: {imp.top} (from {sorted(dists) or 'no installed distribution'})")
    return sorted(set(bad))


@pytest.mark.parametrize("dist", [RUNTIME, DEV], ids=lambda d: d.name)
def test_every_third_party_import_is_declared(dist: Distribution) -> None:
    declared = set().union(*dist.requirements().values())
    imported = [imp for package in dist.packages for imp in imports(package)]
    assert undeclared(imported, declared) == []


def test_the_base_package_imports_only_base_dependencies_at_module_level() -> None:
    """What ``kubenas`` imports when a module loads is a base dependency; extras are imported where used."""
    base = RUNTIME.requirements()[""]
    loaded = [
        imp
        for name in BASE_PACKAGES
        for imp in imports(RUNTIME.pyproject.parent / "operator" / name)
        if imp.module_level
    ]
    assert undeclared(loaded, base) == []
    assert [f"{i.where}: {i.top}" for i in loaded if i.top in (*TORCH_EXTRA_PACKAGES, "kubenas_dev")] == []


@pytest.mark.parametrize("dist", [RUNTIME, DEV], ids=lambda d: d.name)
def test_every_declared_dependency_is_imported(dist: Distribution) -> None:
    imported = {d for package in dist.packages for imp in imports(package) for d in distributions_of(imp.top)}
    declared = {name for extra, names in dist.requirements().items() if extra not in TOOL_EXTRAS for name in names}
    assert sorted(declared - imported) == []


def test_the_static_check_reads_lazy_and_module_level_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text("import json\nimport yaml\n\ndef f():\n    from numpy import linalg\n")
    found = {(i.top, i.module_level) for i in imports(package)}
    assert found == {("yaml", True), ("numpy", False)}
    assert undeclared(imports(package), {"pyyaml"}) == ["pkg/m.py: numpy (from ['numpy'])"]
    assert undeclared(imports(package), {"pyyaml", "numpy"}) == []


def test_a_distribution_pinned_by_a_declared_one_counts_as_declared() -> None:
    assert "pydantic-core" in pinned_by("pydantic")
    assert undeclared([Import("pydantic_core", "m.py", True)], {"pydantic"}) == []
    assert undeclared([Import("pydantic_core", "m.py", True)], {"pyyaml"}) != []


# --- a real install --------------------------------------------------------------------------------

#: What the operator image copies before ``pip install .`` (Dockerfile, build stage).
IMAGE_SOURCES = ("pyproject.toml", "README.md", "operator", "trainer_image")

# Modules are found from the installed files (not by importing packages to walk them), so one
# failing package reports its error instead of hiding every module below it.
IMPORT_EVERY_MODULE = """
import importlib, importlib.util, json, pathlib, sys
failed, imported = {}, []
for name in sys.argv[1:]:
    root = pathlib.Path(importlib.util.find_spec(name).submodule_search_locations[0])
    for path in sorted(root.rglob("*.py")):
        parts = (name, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        try:
            importlib.import_module(module)
            imported.append(module)
        except Exception as exc:
            failed[module] = f"{type(exc).__name__}: {exc}"
present = [m for m in ("torch", "sklearn", "matplotlib", "kubenas_dev") if importlib.util.find_spec(m)]
print(json.dumps({"failed": failed, "imported": imported, "present": present}))
"""


@pytest.mark.slow
def test_a_fresh_base_install_imports_every_module(tmp_path: Path) -> None:
    """The operator image's install (``pip install .``, no extras) in a venv without system packages."""
    source = tmp_path / "src"
    source.mkdir()
    for name in IMAGE_SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    started = time.monotonic()
    # --no-compile: byte-compiling every installed library doubles the install and checks nothing.
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile", str(source)],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr[-4000:]
    print(f"pip install . into a fresh venv: {time.monotonic() - started:.1f}s")

    out = subprocess.run(
        [str(python), "-c", IMPORT_EVERY_MODULE, *BASE_PACKAGES], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}
    assert report["present"] == []  # a base install: no torch extra, no development tools
    assert {"kubenas.operator.handlers", "kubenas.controller.server", "kubenas.core.search"} <= set(report["imported"])

    # The development commands are absent and say where they come from.
    cluster = subprocess.run([str(venv / "bin" / "kubenas"), "cluster", "up"], capture_output=True, text=True)
    assert cluster.returncode == 2 and "devtools" in cluster.stderr, cluster.stderr

"""Import rules that keep the operator slim and the package importable."""

from __future__ import annotations

import subprocess
import sys

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
    forbidden = ("open(", "subprocess", "socket", "requests", "httpx", "urllib", "os.environ", "time.time(")
    offenders = []
    for path in (REPO / "operator" / "kubenas" / "core").rglob("*.py"):
        text = path.read_text()
        offenders += [f"{path.name}: {f}" for f in forbidden if f in text]
    assert offenders == []

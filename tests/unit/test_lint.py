"""The tree stays ruff-clean: style is checked where the tests run, not left to memory."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import REPO


def test_ruff_finds_nothing() -> None:
    ruff = shutil.which("ruff")
    cmd = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    paths = ["operator", "trainer_image", "devtools", "tests", "benchmarks"]
    out = subprocess.run([*cmd, "check", *paths], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:]

"""Fixtures of the trainer tests: one torch thread, tiny networks, the trial contract's environment."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from kubenas_trainer.candidate import RESNET_CELL

torch.set_num_threads(1)

RESNET_LIKE = RESNET_CELL

TINY = {"width": 8, "stages": 2, "cells_per_stage": 1, "threads": 1, "latency_runs": 2}


def contract_env(
    tmp_path: Path,
    architecture: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    seed: int = 0,
    output: bool = False,
) -> dict[str, str]:
    """The contract's variables for one trial whose result file lies in ``tmp_path``."""
    env = {
        "KUBENAS_ARCHITECTURE": json.dumps(architecture if architecture is not None else RESNET_LIKE),
        "KUBENAS_SETTINGS": json.dumps({**TINY, **(settings or {})}),
        "KUBENAS_SEED": str(seed),
        "KUBENAS_TRIAL": "t-00000",
        "KUBENAS_EXPERIMENT": "t",
        "KUBENAS_RESULT_FILE": str(tmp_path / "result.json"),
    }
    if output:
        env["KUBENAS_OUTPUT_DIR"] = str(tmp_path / "out")
    return env


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """Restore SIGTERM and SIGINT handlers after a test that runs ``main`` in this process."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)

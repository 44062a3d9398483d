"""Shared test helpers: repository paths and small experiment builders."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def experiment_dict(**spec_overrides: Any) -> dict[str, Any]:
    """A small valid SearchExperiment manifest using the toy trial; override spec keys as needed."""
    spec: dict[str, Any] = {
        "searchSpace": {"cell": {"nodes": 3, "operations": ["none", "skip_connect", "nor_conv_3x3"]}},
        "strategy": {"name": "random", "seed": 1},
        "objective": {"metric": "val_accuracy"},
        "budget": {"maxTrials": 6, "parallelTrials": 2},
        "trialTemplate": {"command": [sys.executable, "-m", "kubenas.local.toy_trial"]},
    }
    spec.update(spec_overrides)
    return {"apiVersion": "kubenas.io/v1alpha1", "kind": "SearchExperiment", "metadata": {"name": "t"}, "spec": spec}


@pytest.fixture
def repo() -> Path:
    return REPO


def running_status(spec: Any, driver: Any, **extra: Any) -> dict[str, Any]:
    """The status the operator would write for a running experiment held by ``driver``."""
    from datetime import UTC, datetime

    from kubenas.operator import status

    return status.experiment_status(
        current={},
        spec=spec,
        verdict=status.Verdict("Running", "Running", ""),
        controller_ready=(True, "Ready", ""),
        spec_verdict=status.SpecVerdict(True),
        generation=1,
        now=datetime.now(UTC),
        summary=(driver.counts, driver.best),
        **extra,
    )


def run_locally(tmp_path: Path, doc: dict[str, Any], console: Any = None, out: str = "out") -> tuple[Any, Path]:
    """``kubenas run`` of the manifest ``doc`` in ``tmp_path``, quietly unless ``console`` is given:
    the run's result and its results folder."""
    import os

    import yaml
    from rich.console import Console

    from kubenas.local.runner import prepare, run

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    exp, folder = prepare(path, tmp_path / out, None)
    if console is not None:
        return run(exp, folder, console), folder
    with open(os.devnull, "w") as sink:
        return run(exp, folder, Console(file=sink)), folder

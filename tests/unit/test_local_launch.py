"""Local mode starts a trial from the full pod template as a trainer pod would get it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rich.console import Console

from kubenas.api.v1alpha1 import TrialTemplate
from kubenas.local.launch import launch_of
from tests.conftest import experiment_dict, run_locally

#: a trial that records what it was started with, then reports a result
PROBE = """
import json, os, sys
out = os.environ["KUBENAS_OUTPUT_DIR"]
seen = {"cwd": os.getcwd(), "args": sys.argv[1:], "env": {k: os.environ.get(k) for k in ("MODE", "SHORT", "TOKEN")}}
open(os.path.join(out, "seen.json"), "w").write(json.dumps(seen))
open(os.environ["KUBENAS_RESULT_FILE"], "w").write(json.dumps({"val_accuracy": 0.5}))
"""


def template(**extra: object) -> dict[str, object]:
    container = {
        "name": "trainer",
        "args": ["--from-template"],
        "env": [
            {"name": "MODE", "value": "template"},
            {"name": "SHORT", "value": "overridden by the short form"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        **extra,
    }
    return {
        "command": [sys.executable, "-c", PROBE],
        "env": [{"name": "SHORT", "value": "short"}],
        "template": {"spec": {"containers": [container]}},
    }


def test_the_trainer_container_gives_env_args_and_working_dir_under_the_short_form(tmp_path: Path) -> None:
    launch = launch_of(TrialTemplate.model_validate(template(workingDir=str(tmp_path))))
    assert launch.env == {"MODE": "template", "SHORT": "short"}  # the short form wins, as on the pod
    assert launch.args == ["--from-template"] and launch.working_dir == str(tmp_path)
    assert launch.cluster_only == ("TOKEN",)
    plain = launch_of(TrialTemplate.model_validate({"command": ["x"], "args": ["a"], "workingDir": "/w"}))
    assert (plain.env, plain.args, plain.working_dir, plain.cluster_only) == ({}, ["a"], "/w", ())


def test_a_local_run_starts_trials_as_the_pod_template_says(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    doc = experiment_dict(budget={"maxTrials": 1, "parallelTrials": 1}, trialTemplate=template(workingDir=str(work)))
    console = Console(record=True, width=200, file=open(os.devnull, "w"))  # noqa: SIM115
    result, folder = run_locally(tmp_path, doc, console)
    assert result.phase == "Succeeded", result
    (seen_file,) = folder.glob("trials/*/output/seen.json")
    seen = json.loads(seen_file.read_text())
    assert seen["cwd"] == str(work) and seen["args"] == ["--from-template"]
    assert seen["env"] == {"MODE": "template", "SHORT": "short", "TOKEN": None}
    assert "Not set locally (their values come from the cluster, valueFrom): TOKEN" in console.export_text()

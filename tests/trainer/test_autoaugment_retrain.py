"""Search a policy on a proxy, retrain it with the full settings, export it: the shipped examples, shrunk.

examples/digits-autoaugment.yaml searches; examples/digits-autoaugment-retrain.yaml retrains its best
policy; ``kubenas export`` of the retrain hands over the weights, the policy as JSON and the snippet
that applies it with torchvision, which must reproduce the trainer's calls on an image of the
trained size.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from kubenas.api.augment import POLICY_FILE, SNIPPET_FILE
from kubenas.export import export, from_results
from kubenas.local.journal import read_journal
from tests.conftest import REPO, run_locally

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")

#: the examples' settings cut to seconds; what differs between search and retrain is kept different
QUICK = {"epochs": 1, "threads": 1, "latencyRuns": 2}


def _example(name: str, **budget: Any) -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "examples" / name).read_text())
    template = doc["spec"]["trialTemplate"]
    template["command"] = [sys.executable, "-m", "kubenas_trainer.main"]
    template.pop("image", None)
    template["settings"] = {**template["settings"], **QUICK}
    doc["spec"]["budget"] = {**doc["spec"]["budget"], **budget}
    return doc


def test_the_searched_policy_is_retrained_wider_and_exported_with_its_snippet(tmp_path: Path) -> None:
    search_doc = _example("digits-autoaugment.yaml", maxTrials=2, parallelTrials=2, maxFailedTrials=0)
    result, search = run_locally(tmp_path, search_doc, out="results/digits-autoaugment")
    assert result.phase == "Succeeded", result.message
    best = json.loads((search / "summary.json").read_text())["best"]

    retrain_doc = _example("digits-autoaugment-retrain.yaml", maxTrials=1, parallelTrials=1)
    retrain_doc["spec"]["strategy"]["retrain"]["topK"] = 1
    result, retrain = run_locally(tmp_path, retrain_doc, out="results/digits-autoaugment-retrain")
    assert result.phase == "Succeeded", result.message
    trials, _ = read_journal(retrain)
    assert [t.architecture for t in trials] == [best["architecture"]]
    described = json.loads((retrain / "trials" / trials[0].name / "output" / "architecture.json").read_text())
    assert described["settings"]["width"] == 16  # the retrain's network, not the search's (8)

    to = tmp_path / "model"
    written = {p.name for p in export(from_results(retrain), to)}
    assert {"model.pt", POLICY_FILE, SNIPPET_FILE, "load_model.py"} <= written
    policy = json.loads((to / POLICY_FILE).read_text())
    assert policy["imageSize"] == [32, 32] and len(policy["subPolicies"]) == 5
    chosen = {k: v for k, v in best["architecture"].items() if k.startswith("aug_")}
    assert policy["subPolicies"][0][0]["operation"] == chosen["aug_0_0_op"]

    namespace: dict[str, Any] = {}
    exec(compile((to / SNIPPET_FILE).read_text(), SNIPPET_FILE, "exec"), namespace)
    image = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0))
    for seed in range(20):
        out = namespace["apply_policy"](image, policy, random.Random(seed))
        assert out.shape == image.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0

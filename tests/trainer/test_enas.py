"""ENAS sampling with the real trainer: a supernet trained on digits with paths from the controller's
policy (its own app, served on loopback), one reward per rewarded path, and a local run through the
three phases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from kubenas.api.oneshot import EnasSettings
from kubenas.api.space import SearchSpaceSpec
from kubenas.controller import paths as channel
from kubenas.core.enas import PathPolicy, PolicyConfig, path_from_wire
from kubenas.local.controller import LoopbackController
from kubenas.local.journal import read_journal
from kubenas_trainer.data import load_dataset
from kubenas_trainer.oneshot import Evaluator, train_supernet
from kubenas_trainer.paths import PathsClient
from kubenas_trainer.settings import resolve_settings
from kubenas_trainer.train import batch_count

SPACE = {"cell": {"nodes": 3, "operations": ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"]}}
DIGITS = {
    "dataset": "digits",
    "width": 4,
    "stages": 2,
    "cellsPerStage": 1,
    "epochs": 2,
    "batchSize": 128,
    "threads": 1,
    "evalEvery": 0,
    "device": "cpu",
}


def test_an_enas_supernet_trains_on_digits_and_rewards_every_rewarded_path(tmp_path: Path) -> None:
    enas = EnasSettings(paths_per_batch=5, batches_per_epoch=2)
    config = PolicyConfig(SearchSpaceSpec.model_validate(SPACE), 7, enas)
    settings, _ = resolve_settings(DIGITS, {})
    data = load_dataset(settings)
    with LoopbackController("digits") as controller:
        env = channel.trainer_env([controller.url], controller.token, "digits-supernet", config)
        client = PathsClient.from_env({**env, "KUBENAS_TRIAL": "digits-supernet"})
        assert client is not None
        run = train_supernet(SPACE, settings, 7, tmp_path, data=data, paths=client)
        # the controller's policy agrees with the trainer's record: the same paths drawn and told
        served = client._post("/paths", {"trial": "digits-supernet", "index": 0, "count": 1})["state"]

    steps = batch_count(len(data.y_train), settings.batch_size)
    rounds = settings.epochs * steps // (steps // 2)
    assert run.policy["policy_rounds"] == rounds
    assert run.policy["rewarded_paths"] == rounds * 5
    assert run.paths == settings.epochs * steps
    lines = [json.loads(line) for line in (tmp_path / "paths.jsonl").read_text().splitlines()]
    rewarded = sorted((p for p in lines if "tellSequence" in p), key=lambda p: p["tellSequence"])
    assert len(rewarded) == rounds * 5 == served["told"] and len(lines) == served["drawn"]
    assert [p["tellSequence"] for p in rewarded] == list(range(len(rewarded)))  # one tell per path, in order
    assert len({p["index"] for p in rewarded}) == len(rewarded)
    assert all(p["reward"] is None or 0.0 <= p["reward"] <= 1.0 for p in rewarded)
    assert len({p["reward"] for p in rewarded}) > 1  # each path its own reward, not a mean over the batch
    # the record rebuilds the policy by the core's replay (which checks every re-drawn path)
    PathPolicy(config, [path_from_wire(p) for p in lines])
    # the checkpoint is an ordinary supernet: phase 2 scores candidates on it
    scored = Evaluator(tmp_path, 2, data=data).evaluate(rewarded[-1]["architecture"] | {"edge_2_0": "nor_conv_3x3"})
    assert 0.0 <= scored["val_accuracy"] <= 1.0


def test_a_local_enas_search_runs_its_three_phases(tmp_path: Path) -> None:
    doc = {
        "apiVersion": "kubenas.io/v1alpha1",
        "kind": "SearchExperiment",
        "metadata": {"name": "tiny-enas"},
        "spec": {
            "searchSpace": SPACE,
            "strategy": {"name": "evolution", "seed": 1, "evolution": {"populationSize": 4, "sampleSize": 2}},
            "objective": {"metric": "val_accuracy"},
            "oneShot": {
                "sampling": "enas",
                "enas": {"pathsPerBatch": 4, "batchesPerEpoch": 2, "warmupEpochs": 1},
                "evaluations": 8,
                "topK": 2,
                "recalibrationBatches": 2,
                "supernetSettings": {"epochs": 3},
                "command": [sys.executable, "-m", "kubenas_trainer.oneshot"],
            },
            "budget": {"maxTrials": 2, "parallelTrials": 2},
            "trialTemplate": {
                "command": [sys.executable, "-m", "kubenas_trainer.main"],
                "settings": {**DIGITS, "epochs": 1},
            },
        },
    }
    manifest = tmp_path / "tiny-enas.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "kubenas.cli", "run", str(manifest), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr + done.stdout

    record = json.loads((results / "supernet" / "record.json").read_text())
    assert record["succeeded"] and record["metrics"]["rewarded_paths"] == 2 * 2 * 4  # 2 epochs after warm-up
    evaluations, _ = read_journal(results / "evaluations")
    assert len(evaluations) == 8 and all(e.told for e in evaluations)
    trials, _ = read_journal(results)
    assert len(trials) == 2 and all(t.phase == "Succeeded" for t in trials)
    guard = json.loads((results / "oneshot.json").read_text())["collapse_guard"]
    assert guard["policy_last_batch"]["architectures"] == 4
    assert 0.0 <= guard["policy_last_batch"]["parameter_free"] <= 1.0

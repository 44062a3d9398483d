"""The shipped weight-flow examples on the development cluster, in the order a user runs them.

examples/digits-cell-search.yaml searches; examples/digits-transfer.yaml starts a new search from
its best cells (seedFrom) and its best trial's weights (initFrom); examples/digits-retrain.yaml
trains its top 3 again. All three share one artifact store (a claim bound to a local
PersistentVolume), as the transfer example's comment tells a user to set up, and the best weights of
the transfer and of the retrain are exported from the cluster and load. Only the sizes are cut
(trials, epochs, width) so that the chain fits a test run; every other field is the example's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from kubenas.export import export, from_cluster
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess
from kubenas_trainer.outputs import load_model
from tests.e2e.test_operator_artifacts import bound_claim
from tests.e2e.test_operator_transfer import env_of

__all__ = ["crds", "kube", "kubenas_operator"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SMALL = {"epochs": 1, "width": 8, "cellsPerStage": 1, "timeBudgetS": 240}


def shipped(name: str, max_trials: int) -> dict[str, Any]:
    """An example as shipped, its sizes cut, on the transfer example's artifact store."""
    doc = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    spec = doc["spec"]
    spec["budget"]["maxTrials"] = max_trials
    if "maxFailedTrials" in spec["budget"]:  # admission: never above maxTrials
        spec["budget"]["maxFailedTrials"] = min(spec["budget"]["maxFailedTrials"], max_trials)
    spec["trialTemplate"]["settings"].update(SMALL)
    spec["artifacts"] = {"persistentVolumeClaim": "kubenas-artifacts"}
    return doc


def exported_model_loads(kube: Kube, experiment: str, to: Path) -> str:
    """Export the experiment's best trial from the cluster; the weights load into its network."""
    found = from_cluster(kube.custom, kube.core, kube.namespace, experiment)
    export(found, to)
    model = load_model(to)
    state = torch.load(to / "model.pt", weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)  # digits: 8x8 grey images, ten classes
    return found.trial


def test_search_then_transfer_then_retrain_from_the_shipped_examples(
    kube: Kube, kubenas_operator: OperatorProcess, tmp_path: Path
) -> None:
    pv = bound_claim(kube, tmp_path / "pv", "kubenas-artifacts")
    try:
        kube.apply_experiment(shipped("digits-cell-search", max_trials=4))
        search = kube.wait_phase("digits-cell-search", timeout=900)["status"]
        assert search["phase"] == "Succeeded", search
        best = search["bestTrial"]["name"]
        ranked = sorted(
            (t for t in kube.trials("digits-cell-search") if t["status"]["phase"] == "Succeeded"),
            key=lambda t: (-t["status"]["metrics"]["val_accuracy"], t["spec"]["index"]),
        )
        top: list[dict[str, Any]] = []
        for t in ranked:
            if t["spec"]["architecture"] not in top:
                top.append(t["spec"]["architecture"])

        transfer = shipped("digits-transfer", max_trials=4)
        k = min(transfer["spec"]["strategy"]["seedFrom"]["topK"], len(top))
        kube.apply_experiment(transfer)
        status = kube.wait_phase("digits-transfer", timeout=900)["status"]
        assert status["phase"] == "Succeeded", status
        trials = sorted(kube.trials("digits-transfer"), key=lambda t: t["spec"]["index"])
        # architecture transfer: the search's best cells come first
        assert [t["spec"]["architecture"] for t in trials[:k]] == top[:k]
        # weight transfer: a trial without a parent starts from the search's best trial's weights
        first = trials[0]
        assert not first["spec"].get("parents")
        assert env_of(kube, first["metadata"]["name"])["KUBENAS_INIT_WEIGHTS"].endswith(f"/digits-cell-search/{best}")
        assert first["status"]["metrics"]["inherited_fraction"] > 0, first["status"]["metrics"]
        exported_model_loads(kube, "digits-transfer", tmp_path / "transfer-export")

        kube.apply_experiment(shipped("digits-retrain", max_trials=3))
        retrain = kube.wait_phase("digits-retrain", timeout=900)["status"]
        assert retrain["phase"] == "Succeeded", retrain
        retrained = sorted(kube.trials("digits-retrain"), key=lambda t: t["spec"]["index"])
        assert [t["spec"]["architecture"] for t in retrained] == top[: len(retrained)]
        exported_model_loads(kube, "digits-retrain", tmp_path / "retrain-export")
    finally:
        kube.core.delete_persistent_volume(pv)

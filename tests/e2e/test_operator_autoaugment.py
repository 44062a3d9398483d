"""The shipped AutoAugment examples on the development cluster: the policy search, then the retrain of
its best policy with the full settings, exported from the cluster with its torchvision snippet.

examples/digits-autoaugment.yaml searches augmentation policies on a proxy; its second phase,
examples/digits-autoaugment-retrain.yaml, retrains the best of them wider. Both use one artifact store
(a claim bound to a local PersistentVolume). Only the sizes are cut (trials, epochs) so the chain fits
a test run; every other field is the example's own.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubenas.api.augment import POLICY_FILE, SNIPPET_FILE
from kubenas.export import export, from_cluster
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess
from tests.e2e.test_operator_artifacts import bound_claim
from tests.e2e.test_operator_examples import shipped

__all__ = ["crds", "kube", "kubenas_operator"]


def test_the_searched_policy_is_retrained_and_exported_from_the_cluster(
    kube: Kube, kubenas_operator: OperatorProcess, tmp_path: Path
) -> None:
    pv = bound_claim(kube, tmp_path / "pv", "kubenas-artifacts")
    try:
        search_doc = shipped("digits-autoaugment", max_trials=3)
        search_doc["spec"]["trialTemplate"]["settings"]["width"] = 4
        kube.apply_experiment(search_doc)
        search = kube.wait_phase("digits-autoaugment", timeout=900)["status"]
        assert search["phase"] == "Succeeded", search
        best = search["bestTrial"]
        assert any(k.startswith("aug_") for k in best["architecture"])  # a policy was searched

        retrain_doc = shipped("digits-autoaugment-retrain", max_trials=1)
        retrain_doc["spec"]["strategy"]["retrain"]["topK"] = 1
        retrain_doc["spec"]["budget"]["parallelTrials"] = 1
        kube.apply_experiment(retrain_doc)
        status = kube.wait_phase("digits-autoaugment-retrain", timeout=900)["status"]
        assert status["phase"] == "Succeeded", status
        trials = kube.trials("digits-autoaugment-retrain")
        assert [t["spec"]["architecture"] for t in trials] == [best["architecture"]]  # the search's best policy

        found = from_cluster(kube.custom, kube.core, kube.namespace, "digits-autoaugment-retrain")
        to = tmp_path / "model"
        written = {p.name for p in export(found, to)}
        assert {"model.pt", POLICY_FILE, SNIPPET_FILE} <= written
        policy = json.loads((to / POLICY_FILE).read_text())
        assert policy  # the policy a user applies with the snippet's few lines of torchvision
    finally:
        kube.core.delete_persistent_volume(pv)

"""``inheritWeights``: admission, and the parent's output folder handed to the child in both modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubenas.api.template import OUTPUT_MOUNT
from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.lineage import TrialOutput, start_weights
from kubenas.core.records import TrialRecord
from kubenas.core.space import build_space
from kubenas.load import ManifestError, parse_document, parse_experiment
from kubenas.local.process import trial_env
from kubenas.operator import manifests
from kubenas.operator.manifests import ExperimentRef
from tests.conftest import experiment_dict

EVOLUTION = {"name": "evolution", "seed": 1, "evolution": {"populationSize": 4, "sampleSize": 2}}
ARTIFACTS = {"persistentVolumeClaim": "nas-store", "path": "runs"}


def document(strategy: dict[str, Any] = EVOLUTION, **spec: Any) -> dict[str, Any]:
    doc = experiment_dict(strategy=strategy, **spec)
    doc["metadata"]["name"] = "cells"
    doc["spec"]["trialTemplate"].update(image="registry.example/trainer:1", inheritWeights=True)
    return doc


def problems(doc: dict[str, Any], kubernetes: bool = True) -> list[tuple[str, str]]:
    with pytest.raises(ManifestError) as err:
        parse_document(doc, kubernetes=kubernetes)
    return err.value.problems


@pytest.mark.parametrize("strategy", ["random", "grid", "tpe", "reinforce"])
def test_a_strategy_without_parents_is_refused(strategy: str) -> None:
    found = problems(document({"name": strategy}, artifacts=ARTIFACTS))
    assert any(p == "spec.trialTemplate.inheritWeights" and "evolution or progressive" in m for p, m in found), found


def test_on_kubernetes_the_parents_weights_need_the_artifact_store() -> None:
    found = problems(document())
    assert any(p == "spec.trialTemplate.inheritWeights" and "spec.artifacts" in m for p, m in found), found
    parse_document(document(), kubernetes=False)  # locally the results folder holds them
    parse_document(document(artifacts=ARTIFACTS))
    parse_document(document({"name": "progressive"}, artifacts=ARTIFACTS))


def test_only_a_child_with_inheritance_starts_from_its_parent() -> None:
    spec = SearchExperimentSpec.model_validate(document()["spec"])
    assert start_weights(spec, "cells", (2,)) == TrialOutput("cells", "cells-00002")
    assert start_weights(spec, "cells", ()) is None
    off = spec.model_copy(update={"trial_template": spec.trial_template.model_copy(update={"inherit_weights": False})})
    assert start_weights(off, "cells", (2,)) is None


def test_locally_the_child_gets_its_parents_output_folder(tmp_path: Path) -> None:
    exp = parse_experiment(document())
    space = build_space(exp.spec.search_space)
    results = tmp_path / "results" / "cells"
    arch = space.sample(np.random.default_rng(0))
    child = TrialRecord(index=5, architecture=arch, name="cells-00005", parents=(2,))
    out = results / "trials" / child.name / "output"
    env = trial_env(exp, space, child, results / "trials" / child.name / "result.json", out)
    assert env["KUBENAS_INIT_WEIGHTS"] == str(results / "trials" / "cells-00002" / "output")
    orphan = child.with_(parents=())
    assert "KUBENAS_INIT_WEIGHTS" not in trial_env(exp, space, orphan, out / "r.json", out)


def test_in_a_pod_the_child_reads_its_parents_folder_of_the_artifact_store() -> None:
    spec = SearchExperimentSpec.model_validate(document(artifacts=ARTIFACTS)["spec"])
    ref = ExperimentRef("research", "cells", "uid-1")
    arch = {"edge_1_0": "none", "edge_2_0": "skip_connect", "edge_2_1": "nor_conv_3x3"}
    trial = manifests.trial_object(ref, spec, 5, arch, "id", parents=(2,))
    assert trial["spec"]["parents"] == [2]
    env = {e["name"]: e["value"] for e in manifests.trial_env("cells", spec, trial)}
    assert env["KUBENAS_INIT_WEIGHTS"] == f"{OUTPUT_MOUNT}/runs/cells/cells-00002"
    assert env["KUBENAS_OUTPUT_DIR"] == f"{OUTPUT_MOUNT}/runs/cells/cells-00005"
    orphan = manifests.trial_object(ref, spec, 1, arch, "id")
    assert "parents" not in orphan["spec"]
    assert "KUBENAS_INIT_WEIGHTS" not in {e["name"] for e in manifests.trial_env("cells", spec, orphan)}

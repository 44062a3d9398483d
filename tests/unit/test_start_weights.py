"""``inheritWeights`` and ``initFrom``: admission, and the checkpoint handed to each trial in both modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubenas.api.template import OUTPUT_MOUNT
from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.lineage import CheckpointFile, TrialOutput, start_weights
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


INIT_TRIAL = {"experiment": "digits", "trial": "digits-00004"}


def init_document(init: dict[str, Any], inherit: bool = False, **spec: Any) -> dict[str, Any]:
    doc = document(**spec)
    doc["spec"]["trialTemplate"].update(initFrom=init, inheritWeights=inherit)
    return doc


@pytest.mark.parametrize(
    ("init", "path"),
    [
        ({"experiment": "digits", "trial": "digits-00004", "file": "/w/model.pt"}, "spec.trialTemplate.initFrom.file"),
        ({}, "spec.trialTemplate.initFrom.file"),
        ({"trial": "digits-00004"}, "spec.trialTemplate.initFrom.trial"),
        ({"file": "/w/model.pt", "trial": "digits-00004"}, "spec.trialTemplate.initFrom.trial"),
        ({"file": "/w/model.pt", "experiment": "digits"}, "spec.trialTemplate.initFrom.file"),
        ({"experiment": "Digits", "trial": "digits-00004"}, "spec.trialTemplate.initFrom.experiment"),
    ],
)
def test_admission_refuses_an_ambiguous_init_from(init: dict[str, Any], path: str) -> None:
    found = problems(init_document(init, artifacts=ARTIFACTS))
    assert any(p == path for p, _ in found), found


def test_on_kubernetes_another_experiments_trial_is_read_from_the_artifact_store() -> None:
    found = problems(init_document(INIT_TRIAL))
    assert any(p == "spec.trialTemplate.initFrom.experiment" and "spec.artifacts" in m for p, m in found), found
    parse_document(init_document(INIT_TRIAL), kubernetes=False)
    parse_document(init_document({"file": "/data/model.pt"}))  # a file of a volume needs no store


def test_a_trial_without_parent_starts_from_init_from() -> None:
    spec = SearchExperimentSpec.model_validate(init_document(INIT_TRIAL, inherit=True)["spec"])
    assert start_weights(spec, "cells", ()) == TrialOutput("digits", "digits-00004")
    assert start_weights(spec, "cells", (1,)) == TrialOutput("cells", "cells-00001")  # the parent wins
    spec = SearchExperimentSpec.model_validate(init_document({"file": "/w/m.pt"})["spec"])
    assert start_weights(spec, "cells", (1,)) == CheckpointFile("/w/m.pt")  # no inheritance asked for


def test_init_from_locally_and_in_a_pod(tmp_path: Path) -> None:
    exp = parse_experiment(init_document(INIT_TRIAL))
    space = build_space(exp.spec.search_space)
    rec = TrialRecord(index=0, architecture=space.sample(np.random.default_rng(0)), name="cells-00000")
    out = tmp_path / "results" / "cells" / "trials" / rec.name / "output"
    env = trial_env(exp, space, rec, out.parent / "result.json", out)
    assert env["KUBENAS_INIT_WEIGHTS"] == str(tmp_path / "results" / "digits" / "trials" / "digits-00004" / "output")
    spec = SearchExperimentSpec.model_validate(init_document(INIT_TRIAL, artifacts=ARTIFACTS)["spec"])
    trial = manifests.trial_object(ExperimentRef("research", "cells", "u"), spec, 0, rec.architecture, "id")
    env = {e["name"]: e["value"] for e in manifests.trial_env("cells", spec, trial)}
    assert env["KUBENAS_INIT_WEIGHTS"] == f"{OUTPUT_MOUNT}/runs/digits/digits-00004"
    spec = SearchExperimentSpec.model_validate(init_document({"file": "/data/m.pt"})["spec"])
    env = {e["name"]: e["value"] for e in manifests.trial_env("cells", spec, trial)}
    assert env["KUBENAS_INIT_WEIGHTS"] == "/data/m.pt"


def test_init_from_an_experiment_alone_is_its_best_trial_read_once(tmp_path: Path) -> None:
    from kubenas.core.errors import SpecError
    from kubenas.core.retrain import SourceRun, resolved_init
    from kubenas.core.spec_changes import judge_edit

    given = SearchExperimentSpec.model_validate(init_document({"experiment": "digits"})["spec"])
    with pytest.raises(SpecError, match="must be resolved"):
        start_weights(given, "cells", ())
    arch = {"edge_1_0": "none", "edge_2_0": "skip_connect", "edge_2_1": "nor_conv_3x3"}
    trials = [
        TrialRecord(index=i, architecture=arch, name=f"digits-{i:05d}", phase="Succeeded", reward=r)
        for i, r in enumerate((0.5, 0.9, 0.7))
    ]
    objective = given.objective
    accepted = resolved_init(given, SourceRun("digits", objective, trials, True, "Succeeded"))
    assert start_weights(accepted, "cells", ()) == TrialOutput("digits", "digits-00001")
    kept, verdict = judge_edit(accepted, given)  # the user's object names no trial: not an edit
    assert verdict.accepted and kept is accepted
    for run, words in ((None, "does not exist"), (SourceRun("digits", objective, trials, False, "Running"), "not")):
        with pytest.raises(SpecError) as err:
            resolved_init(given, run)
        assert err.value.field == "spec.trialTemplate.initFrom.experiment" and words in str(err.value)


def test_init_from_a_named_trial_must_be_a_succeeded_trial_of_its_source() -> None:
    """A misspelt trial would start every candidate from scratch (the warm start finds no weights):
    refused when the source is read; a missing source is refused locally but not on Kubernetes, where
    the artifact store keeps the weights after the SearchExperiment is deleted."""
    from kubenas.core.errors import SpecError
    from kubenas.core.retrain import SourceRun, resolved_init

    arch = {"edge_1_0": "none", "edge_2_0": "skip_connect", "edge_2_1": "nor_conv_3x3"}
    trials = [
        TrialRecord(index=0, architecture=arch, name="digits-00000", phase="Succeeded", reward=0.5),
        TrialRecord(index=1, architecture=arch, name="digits-00001", phase="Failed"),
    ]
    for name, accepted in (("digits-00000", True), ("digits-00001", False), ("digits-00009", False)):
        given = SearchExperimentSpec.model_validate(init_document({"experiment": "digits", "trial": name})["spec"])
        run = SourceRun("digits", given.objective, trials, False, "Running")  # need not be finished
        if accepted:
            assert resolved_init(given, run) is given
            continue
        with pytest.raises(SpecError) as err:
            resolved_init(given, run)
        assert err.value.field == "spec.trialTemplate.initFrom.trial" and name in str(err.value)
    given = SearchExperimentSpec.model_validate(
        init_document({"experiment": "digits", "trial": "digits-00000"})["spec"]
    )
    with pytest.raises(SpecError, match="does not exist"):
        resolved_init(given, None)
    assert resolved_init(given, None, weights_outlive_runs=True) is given

"""The full pod template: the upstream PodSpec schema, the merge with the short form, the refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubenas.api import podspec
from kubenas.api.template import OUTPUT_MOUNT, OUTPUT_VOLUME
from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.load import ManifestError, parse_document
from kubenas.operator import manifests
from tests.conftest import experiment_dict

EXP = manifests.ExperimentRef("team-a", "cells", "uid-exp")
ARCH = {"edge_1_0": "none", "edge_2_0": "nor_conv_3x3", "edge_2_1": "none"}
UPSTREAM = Path.home() / "go/pkg/mod/k8s.io/kubernetes@v1.32.2/api/openapi-spec/v3/api__v1_openapi.json"

POD = {
    "serviceAccountName": "trainer-sa",
    "imagePullSecrets": [{"name": "registry"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]
            }
        }
    },
    "initContainers": [{"name": "fetch", "image": "busybox:1.36", "command": ["true"]}],
    "containers": [
        {
            "name": "trainer",
            "env": [{"name": "DATA", "value": "/data"}, {"name": "KUBENAS_SEED", "value": "hijack"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
        },
        {"name": "sidecar", "image": "busybox:1.36", "command": ["sleep", "1"]},
    ],
    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}],
    "securityContext": {"runAsUser": 2000, "runAsNonRoot": True},
}


def template(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": "registry.example/trainer:1",
        "command": ["kubenas-trainer"],
        "template": {"metadata": {"labels": {"team": "vision"}, "annotations": {"note": "x"}}, "spec": POD},
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def experiment(tt: dict[str, Any], **spec: Any) -> dict[str, Any]:
    doc = experiment_dict()
    doc["spec"]["trialTemplate"] = tt
    doc["spec"].update(spec)
    return doc


def refusal(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ManifestError) as err:
        parse_document(doc)
    return err.value.problems


def job_of(doc: dict[str, Any]) -> dict[str, Any]:
    spec = SearchExperimentSpec.model_validate(doc["spec"])
    trial = manifests.trial_object(EXP, spec, 3, ARCH, "id")
    return manifests.trainer_job(EXP, spec, trial)


def test_the_shipped_schema_is_the_trimmed_upstream_podspec() -> None:
    if not UPSTREAM.exists():
        pytest.skip("the upstream OpenAPI document comes with the test control plane's Go modules")
    assert podspec.trim(json.loads(UPSTREAM.read_text())) == podspec.schema()


def test_the_crd_carries_the_podspec_schema_and_the_rules() -> None:
    from kubenas.api.crd import crds

    crd = crds()["kubenas.io_searchexperiments.yaml"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    tt = spec["properties"]["trialTemplate"]
    pod = tt["properties"]["template"]["properties"]["spec"]
    assert pod["required"] == ["containers"]
    container = pod["properties"]["containers"]["items"]["properties"]
    assert {"volumeMounts", "securityContext", "image"} <= set(container)
    assert container["resources"]["properties"]["limits"]["additionalProperties"]["x-kubernetes-int-or-string"]
    assert "x-kubernetes-preserve-unknown-fields" not in json.dumps(pod)
    rules = " ".join(r["rule"] for r in tt["x-kubernetes-validations"])
    assert "restartPolicy == 'Never'" in rules and "kubenas-output" in rules


def test_a_full_pod_template_is_accepted_and_merged_around_the_trainer() -> None:
    doc = experiment(template(args=["--fast"], env=[{"name": "EXTRA", "value": "1"}]))
    parse_document(doc)
    job = job_of(doc)
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "vision"
    assert pod["metadata"]["labels"]["kubenas.io/trial"] == "cells-00003"
    assert pod["metadata"]["annotations"] == {"note": "x"}
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "trainer-sa" and spec["imagePullSecrets"] == [{"name": "registry"}]
    assert spec["initContainers"][0]["name"] == "fetch" and "affinity" in spec
    assert spec["securityContext"] == {"runAsUser": 2000, "runAsNonRoot": True}  # the user's, untouched
    assert spec["restartPolicy"] == "Never"
    trainer, sidecar = spec["containers"]
    assert sidecar == POD["containers"][1]
    assert trainer["image"] == "registry.example/trainer:1" and trainer["args"] == ["--fast"]
    env = {e["name"]: e["value"] for e in trainer["env"]}
    assert env["KUBENAS_SEED"] != "hijack" and env["DATA"] == "/data" and env["EXTRA"] == "1"
    assert env["KUBENAS_OUTPUT_DIR"] == OUTPUT_MOUNT
    assert trainer["terminationMessagePath"] == "/dev/termination-log"
    mounts = {m["name"]: m["mountPath"] for m in trainer["volumeMounts"]}
    assert mounts == {"data": "/data", OUTPUT_VOLUME: OUTPUT_MOUNT}
    assert {"name": OUTPUT_VOLUME, "emptyDir": {}} in spec["volumes"]
    assert POD["containers"][0].get("image") is None  # the spec given is never modified


def test_the_first_container_is_the_trainer_when_none_is_named_so() -> None:
    pod = {"containers": [{"name": "main", "image": "registry.example/own:2"}, {"name": "b", "image": "x"}]}
    doc = experiment(template(image=None, template={"spec": pod}))
    parse_document(doc)
    containers = job_of(doc)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["trainer", "b"]
    assert containers[0]["image"] == "registry.example/own:2"
    assert manifests.trainer_image(SearchExperimentSpec.model_validate(doc["spec"])) == "registry.example/own:2"


def test_the_short_form_alone_builds_the_same_pod_as_before() -> None:
    doc = experiment({"image": "i:1", "command": ["t"], "nodeSelector": {"gpu": "yes"}})
    spec = job_of(doc)["spec"]["template"]["spec"]
    (trainer,) = spec["containers"]
    assert trainer["image"] == "i:1" and trainer["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["nodeSelector"] == {"gpu": "yes"} and spec["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"template": {"spec": {"containers": []}}}, "spec.trialTemplate.template.spec.containers", "trainer"),
        ({"template": {"spec": {}}}, "spec.trialTemplate.template.spec.containers", "required"),
        ({"image": None, "template": {"spec": {"containers": [{"name": "t"}]}}}, "spec.trialTemplate.image", "image"),
        (
            {"template": {"spec": {"containers": [{"name": "trainer", "image": "other"}]}}},
            "spec.trialTemplate.template.spec.containers",
            "image is set both",
        ),
        (
            {"template": {"spec": {"containers": [{"name": "trainer", "command": ["x"]}]}}},
            "spec.trialTemplate.template.spec.containers",
            "command is set both",
        ),
        (
            {
                "resources": {"limits": {"cpu": 1}},
                "template": {"spec": {"containers": [{"name": "a", "resources": {}}]}},
            },
            "spec.trialTemplate.template.spec.containers",
            "resources is set both",
        ),
        (
            {"nodeSelector": {"a": "b"}, "template": {"spec": {"containers": [{"name": "a"}], "nodeSelector": {}}}},
            "spec.trialTemplate.template.spec.nodeSelector",
            "set both",
        ),
        (
            {"template": {"spec": {"containers": [{"name": "a"}], "restartPolicy": "OnFailure"}}},
            "spec.trialTemplate.template.spec.restartPolicy",
            "Never",
        ),
        (
            {"template": {"spec": {"containers": [{"name": "a", "terminationMessagePath": "/tmp/x"}]}}},
            "spec.trialTemplate.template.spec.containers",
            "terminationMessagePath",
        ),
        (
            {"template": {"spec": {"containers": [{"name": "a"}], "volumes": [{"name": "kubenas-output"}]}}},
            "spec.trialTemplate.template.spec.volumes",
            "operator's",
        ),
        (
            {"template": {"spec": {"containers": [{"name": "a", "imagePullPolicy": 1}]}}},
            "spec.trialTemplate.template.spec.containers[0].imagePullPolicy",
            "string",
        ),
        (
            {"template": {"spec": {"containers": [{"name": "a", "volumeMount": []}]}}},
            "spec.trialTemplate.template.spec.containers[0].volumeMount",
            "unknown field",
        ),
        (
            {"template": {"spec": {"containers": [{"name": "a", "resources": {"limits": {"memory": "lots"}}}]}}},
            "spec.trialTemplate.template.spec.containers[0].resources.limits.memory",
            "quantity",
        ),
        (
            {"template": {"metadata": {"labels": {"bad key!": "x"}}, "spec": {"containers": [{"name": "a"}]}}},
            "spec.trialTemplate.template.metadata.labels",
            "qualified name",
        ),
    ],
)
def test_admission_refuses_what_would_break_the_contract(change: dict[str, Any], path: str, words: str) -> None:
    tt = template(**{"template": None, **change})
    problems = refusal(experiment(tt))
    assert any(p == path and words in m for p, m in problems), problems


@pytest.mark.parametrize(
    ("artifacts", "path"),
    [
        ({"persistentVolumeClaim": "Bad_Name"}, "spec.artifacts.persistentVolumeClaim"),
        ({"persistentVolumeClaim": "c", "path": "/abs"}, "spec.artifacts.path"),
        ({"persistentVolumeClaim": "c", "path": "a/../b"}, "spec.artifacts.path"),
        ({"path": "a"}, "spec.artifacts.persistentVolumeClaim"),
    ],
)
def test_admission_refuses_a_bad_artifact_store(artifacts: dict[str, Any], path: str) -> None:
    problems = refusal(experiment(template(), artifacts=artifacts))
    assert any(p == path for p, _ in problems), problems


def test_the_artifact_store_is_mounted_and_named_in_the_contract() -> None:
    doc = experiment(template(), artifacts={"persistentVolumeClaim": "nas-store", "path": "runs/v1"})
    parse_document(doc)
    spec = SearchExperimentSpec.model_validate(doc["spec"])
    pod = job_of(doc)["spec"]["template"]["spec"]
    assert {"name": OUTPUT_VOLUME, "persistentVolumeClaim": {"claimName": "nas-store"}} in pod["volumes"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["KUBENAS_OUTPUT_DIR"] == f"{OUTPUT_MOUNT}/runs/v1/cells/cells-00003"
    assert manifests.trial_artifacts(spec, "cells", "cells-00003") == {
        "persistentVolumeClaim": "nas-store",
        "path": "runs/v1/cells/cells-00003",
    }
    assert (
        manifests.trial_artifacts(SearchExperimentSpec.model_validate(experiment(template())["spec"]), "c", "t") is None
    )

"""The objects the operator creates, read as plain dicts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.errors import SpecError
from kubenas.operator import manifests, names

EXP = manifests.ExperimentRef("team-a", "cells", "uid-exp")


def spec(**template: Any) -> SearchExperimentSpec:
    base: dict[str, Any] = {
        "image": "registry.example/kubenas-trainer:0.1",
        "command": ["kubenas-trainer"],
        "args": ["--fast"],
        "env": [{"name": "EXTRA", "value": "1"}, {"name": "KUBENAS_SEED", "value": "hijack"}],
        "settings": {"dataset": "digits", "epochs": 3},
        "resources": {"requests": {"cpu": "2"}, "limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}},
        "nodeSelector": {"gpu": "a100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "nas-low",
        "retries": 4,
        "deadlineSeconds": 3600,
    }
    base.update(template)
    return SearchExperimentSpec.model_validate(
        {
            "searchSpace": {"cell": {"nodes": 3, "operations": ["none", "nor_conv_3x3"]}},
            "strategy": {"name": "random", "seed": 7},
            "budget": {"maxTrials": 10, "parallelTrials": 2},
            "trialTemplate": base,
        }
    )


ARCH = {"edge_1_0": "none", "edge_2_0": "nor_conv_3x3", "edge_2_1": "none"}
ARCH_ID = "edge_1_0=none,edge_2_0=nor_conv_3x3,edge_2_1=none"


def trial(s: SearchExperimentSpec | None = None, index: int = 4) -> dict[str, Any]:
    obj = manifests.trial_object(EXP, s or spec(), index, ARCH, ARCH_ID)
    obj["metadata"]["uid"] = "uid-trial"
    return obj


def job(s: SearchExperimentSpec | None = None) -> dict[str, Any]:
    return manifests.trainer_job(EXP, s or spec(), trial(s))


def trainer(j: dict[str, Any]) -> dict[str, Any]:
    (container,) = j["spec"]["template"]["spec"]["containers"]
    return container


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_trial_is_named_by_index_labelled_and_owned_by_the_experiment() -> None:
    t = trial()
    assert t["metadata"]["name"] == "cells-00004"
    assert t["metadata"]["labels"][names.LABEL_EXPERIMENT] == "cells"
    (owner,) = t["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "SearchExperiment",
        "cells",
        "uid-exp",
        True,
    )
    assert t["spec"] == {
        "experiment": "cells",
        "index": 4,
        "architecture": ARCH,
        "architectureId": ARCH_ID,
        "seed": t["spec"]["seed"],
    }
    assert "status" not in t


def test_trial_seed_is_fixed_by_experiment_seed_and_index() -> None:
    assert trial()["spec"]["seed"] == trial()["spec"]["seed"]
    assert trial(index=5)["spec"]["seed"] != trial()["spec"]["seed"]


def test_job_is_named_after_its_trial_and_owned_by_the_experiment() -> None:
    j = job()
    assert j["metadata"]["name"] == "cells-00004"
    (owner,) = j["metadata"]["ownerReferences"]  # no Trial uid needed: Trial and Job are created together
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("SearchExperiment", "uid-exp", True)
    pod_labels = j["spec"]["template"]["metadata"]["labels"]
    assert pod_labels[names.LABEL_TRIAL] == "cells-00004"
    assert pod_labels[names.LABEL_EXPERIMENT] == "cells"
    assert pod_labels[names.LABEL_COMPONENT] == names.COMPONENT_TRAINER


def test_job_never_retries_a_bad_candidate_or_a_configuration_error_and_ignores_disruptions() -> None:
    j = job()["spec"]
    assert j["backoffLimit"] == 4
    assert j["template"]["spec"]["restartPolicy"] == "Never"
    bad, disruption = j["podFailurePolicy"]["rules"]
    assert bad == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [2, 3]},
    }
    assert disruption["action"] == "Ignore"
    assert disruption["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]


def test_job_carries_the_template_scheduling_and_resources() -> None:
    j = job()["spec"]
    pod = j["template"]["spec"]
    assert j["activeDeadlineSeconds"] == 3600
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "nas-low"
    c = trainer(job())
    assert c["resources"] == {"requests": {"cpu": "2"}, "limits": {"nvidia.com/gpu": "1", "memory": "8Gi"}}
    assert (c["image"], c["command"], c["args"]) == (
        "registry.example/kubenas-trainer:0.1",
        ["kubenas-trainer"],
        ["--fast"],
    )


def test_job_optional_fields_are_left_out_when_unset() -> None:
    s = spec(nodeSelector={}, tolerations=[], priorityClassName=None, deadlineSeconds=None, resources={}, args=[])
    j = job(s)["spec"]
    pod = j["template"]["spec"]
    assert "activeDeadlineSeconds" not in j
    assert not {"nodeSelector", "tolerations", "priorityClassName"} & set(pod)
    assert not {"resources", "args"} & set(trainer(job(s)))


def test_job_pod_is_locked_down_to_the_restricted_profile() -> None:
    pod = job()["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = trainer(job())["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_job_hands_the_trial_contract_to_the_trainer() -> None:
    c = trainer(job())
    e = env(c)
    assert json.loads(e["KUBENAS_ARCHITECTURE"]) == ARCH
    assert e["KUBENAS_ARCHITECTURE_ID"] == ARCH_ID
    assert json.loads(e["KUBENAS_SETTINGS"]) == {"dataset": "digits", "epochs": 3}
    assert json.loads(e["KUBENAS_SEARCH_SPACE"]) == spec().search_space.to_wire()
    assert (e["KUBENAS_TRIAL"], e["KUBENAS_EXPERIMENT"]) == ("cells-00004", "cells")
    assert e["KUBENAS_SEED"] == str(trial()["spec"]["seed"])  # the template cannot override the contract
    assert e["EXTRA"] == "1"
    # the result travels in the termination message
    assert e["KUBENAS_RESULT_FILE"] == c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"


def test_a_trial_image_is_required_on_kubernetes() -> None:
    with pytest.raises(SpecError, match=r"spec\.trialTemplate\.image"):
        job(spec(image=None))


def test_controller_deployment_runs_one_pod_from_the_trial_image_with_the_token() -> None:
    s = spec()
    d = manifests.controller_deployment(EXP, s)
    assert d["metadata"]["name"] == "cells-controller"
    assert d["spec"]["replicas"] == 1
    assert d["spec"]["strategy"] == {"type": "Recreate"}  # never two controllers at once
    pod = d["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    assert c["image"] == s.trial_template.image
    assert c["command"] == ["kubenas", "controller", "serve"]
    token = next(e for e in c["env"] if e["name"] == names.TOKEN_ENV)
    assert token["valueFrom"]["secretKeyRef"] == {"name": "cells-controller", "key": names.TOKEN_KEY}
    pod_ip = next(e for e in c["env"] if e["name"] == "POD_IP")
    assert pod_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    selector = d["spec"]["selector"]["matchLabels"]
    assert selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()


def test_controller_image_can_differ_from_the_trial_image() -> None:
    s = spec().model_copy(update={"controller": spec().controller.model_copy(update={"image": "ctl:1"})})
    (c,) = manifests.controller_deployment(EXP, s)["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "ctl:1"


def test_controller_service_is_headless_and_selects_the_controller_pod() -> None:
    svc = manifests.controller_service(EXP)
    assert svc["spec"]["clusterIP"] == "None"  # reached by pod IP from the EndpointSlice, never a ClusterIP
    d = manifests.controller_deployment(EXP, spec())
    assert svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
    assert svc["metadata"]["labels"][names.LABEL_EXPERIMENT] == "cells"  # mirrored onto the EndpointSlice


def test_controller_secret_holds_the_token_and_the_accepted_spec() -> None:
    s = spec()
    secret = manifests.controller_secret(EXP, "tok", s)
    assert secret["stringData"][names.TOKEN_KEY] == "tok"
    assert SearchExperimentSpec.model_validate(json.loads(secret["stringData"][names.SPEC_KEY])) == s
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "uid-exp"


def test_gpus_are_counted_from_limits() -> None:
    assert manifests.gpus_of(spec().trial_template.resources) == 1.0
    assert manifests.gpus_of(spec(resources={}).trial_template.resources) == 0.0


@pytest.mark.parametrize(
    ("name", "ok"),
    [("cells", True), ("a" * names.MAX_EXPERIMENT_NAME, True), ("a" * 53, False), ("1cells", False)],
)
def test_experiment_names_must_fit_their_children(name: str, ok: bool) -> None:
    assert (names.name_problem(name) is None) == ok
    if ok:
        assert len(names.controller_name(name)) <= 63
        assert len(names.trial_name(name, 99999)) <= 63

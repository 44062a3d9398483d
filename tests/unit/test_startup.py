"""A pod that cannot start (a container the kubelet cannot create, an image it cannot pull) or a missing
PersistentVolumeClaim fails the experiment, naming the field to look at, once a pod has waited past the
grace period to start; a claim that exists, or a pod that has not waited long, does not."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.operator.failures import ExperimentLog, Fatal
from kubenas.operator.grace import GRACE_S as CLAIM_GRACE_S
from kubenas.operator.kube import ApiError, NotFound
from kubenas.operator.startup import PULL_GRACE_S, StartCheck, claims, longest_wait
from kubenas.operator.views import PodView, Termination
from tests.conftest import experiment_dict

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DATASETS = {"name": "data", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}}


def spec(artifacts: bool = True, volumes: list[dict[str, Any]] | None = None) -> SearchExperimentSpec:
    doc = experiment_dict()["spec"]
    if artifacts:
        doc["artifacts"] = {"persistentVolumeClaim": "store"}
    if volumes is not None:
        doc["trialTemplate"]["template"] = {"spec": {"containers": [{"name": "trainer"}], "volumes": volumes}}
    return SearchExperimentSpec.model_validate(doc)


def pod(
    name: str, waited: float, running: bool = False, ended: bool = False, waiting: tuple[str, str, str] | None = None
) -> PodView:
    created = (NOW - timedelta(seconds=waited)).isoformat().replace("+00:00", "Z")
    return PodView(
        name=name,
        uid=name,
        owner_uid="job",
        resource_version=1,
        trial="exp-00000",
        created=created,
        running_since=created if running else None,
        terminated=Termination(0, None, None, None, None) if ended else None,
        waiting=waiting,
    )


class Api:
    """The claims the namespace holds; every lookup is counted."""

    def __init__(self, existing: set[str], error: ApiError | None = None) -> None:
        self.existing, self.error, self.gets = existing, error, 0

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        assert (api_version, kind, namespace) == ("v1", "PersistentVolumeClaim", "ns")
        self.gets += 1
        if self.error is not None:
            raise self.error
        if name not in self.existing:
            raise NotFound(404, "NotFound", f'persistentvolumeclaims "{name}" not found')
        return {"metadata": {"name": name}}


def check(api: Api) -> tuple[StartCheck, list[float]]:
    wakes: list[float] = []
    log = ExperimentLog(logging.getLogger("test"), {})
    return StartCheck(api, "ns", log, wakes.append), wakes  # type: ignore[arg-type]


def test_the_claims_are_the_artifact_store_and_the_template_volumes() -> None:
    assert claims(spec(volumes=[{"name": "scratch", "emptyDir": {}}, DATASETS])) == [
        ("spec.artifacts.persistentVolumeClaim", "store"),
        ("spec.trialTemplate.template.spec.volumes[1].persistentVolumeClaim.claimName", "datasets"),
    ]
    assert claims(spec(artifacts=False)) == []


def test_the_longest_wait_counts_only_pods_not_started() -> None:
    pods = [pod("a", 50, running=True), pod("b", 40), pod("c", 90, ended=True), pod("d", 10)]
    assert longest_wait(pods, NOW) == ("b", 40.0)
    assert longest_wait([pod("a", 50, running=True)], NOW) is None


def test_a_missing_claim_fails_the_experiment_naming_its_field_after_the_grace() -> None:
    api = Api({"store"})
    start_check, wakes = check(api)
    the_spec = spec(volumes=[DATASETS])
    asyncio.run(start_check(the_spec, [pod("p", CLAIM_GRACE_S - 10)], NOW))
    assert api.gets == 0 and wakes == [pytest.approx(10.5)]  # not yet: looked up when the grace ends
    with pytest.raises(Fatal) as failed:
        asyncio.run(start_check(the_spec, [pod("p", CLAIM_GRACE_S + 5)], NOW))
    assert failed.value.reason == "ClaimNotFound"
    assert failed.value.message.startswith(
        "spec.trialTemplate.template.spec.volumes[0].persistentVolumeClaim.claimName: "
        "no PersistentVolumeClaim 'datasets' in namespace ns; the pod p has waited 35s"
    )


def test_claims_that_exist_keep_the_pods_waiting_and_are_looked_up_at_most_every_half_grace() -> None:
    api = Api({"store"})
    start_check, _ = check(api)
    for _ in range(3):
        asyncio.run(start_check(spec(), [pod("p", CLAIM_GRACE_S + 5)], NOW))
    assert api.gets == 1
    start_check.gate.checked -= CLAIM_GRACE_S  # half a grace period later
    asyncio.run(start_check(spec(), [pod("p", CLAIM_GRACE_S + 5)], NOW))
    assert api.gets == 2


def test_claims_that_cannot_be_read_keep_the_pods_waiting() -> None:
    api = Api(set(), error=ApiError(403, "Forbidden", "cannot get persistentvolumeclaims"))
    start_check, _ = check(api)
    asyncio.run(start_check(spec(), [pod("p", CLAIM_GRACE_S + 5)], NOW))
    assert api.gets == 1
    running = Api(set())
    start_check, _ = check(running)
    asyncio.run(start_check(spec(), [pod("p", 300, running=True)], NOW))  # started: nothing to look up
    assert running.gets == 0


SECRET = ("trainer", "CreateContainerConfigError", 'secret "wandb" not found')


def test_a_container_that_cannot_be_created_fails_the_experiment_after_the_grace() -> None:
    api = Api({"store"})
    start_check, wakes = check(api)
    asyncio.run(start_check(spec(), [pod("p", CLAIM_GRACE_S - 5, waiting=SECRET)], NOW))
    assert wakes == [pytest.approx(5.5)]  # a Secret applied just after the experiment still counts
    with pytest.raises(Fatal) as failed:
        asyncio.run(start_check(spec(), [pod("q", 3), pod("p", CLAIM_GRACE_S + 1, waiting=SECRET)], NOW))
    assert failed.value.reason == "PodCannotStart"
    assert failed.value.message == (
        "spec.trialTemplate (a Secret or ConfigMap its pods reference): the pod p cannot start its container"
        " 'trainer' (CreateContainerConfigError: secret \"wandb\" not found); it has waited 31s"
    )
    assert api.gets == 0


def test_a_failed_image_pull_counts_only_after_the_pull_grace() -> None:
    pulling = ("trainer", "ImagePullBackOff", 'Back-off pulling image "registry.example/trainer:v9"')
    api = Api({"store"})
    start_check, _ = check(api)
    asyncio.run(start_check(spec(), [pod("p", CLAIM_GRACE_S + 5, waiting=pulling)], NOW))
    assert api.gets == 1  # the kubelet retries the pull: the claims are looked at, nothing fails
    start_check.gate.checked -= CLAIM_GRACE_S
    with pytest.raises(Fatal) as failed:
        asyncio.run(start_check(spec(), [pod("p", PULL_GRACE_S + 1, waiting=pulling)], NOW))
    assert failed.value.message.startswith("spec.trialTemplate.image (or its imagePullSecrets): the pod p")


def test_the_pod_view_keeps_the_first_waiting_reason_that_is_not_a_normal_start() -> None:
    def status(init: str | None, main: str) -> dict[str, Any]:
        def entry(name: str, reason: str) -> dict[str, Any]:
            return {"name": name, "state": {"waiting": {"reason": reason, "message": f"{name} waits"}}}

        return {
            "metadata": {"name": "p", "creationTimestamp": "2026-01-01T12:00:00Z"},
            "status": {
                "initContainerStatuses": [entry("fetch", init)] if init else [],
                "containerStatuses": [entry("trainer", main)],
            },
        }

    assert PodView.parse(status(None, "ContainerCreating")).waiting is None
    assert PodView.parse(status("PodInitializing", "ErrImagePull")).waiting == (
        "trainer",
        "ErrImagePull",
        "trainer waits",
    )
    assert PodView.parse(status("InvalidImageName", "PodInitializing")).waiting == (
        "fetch",
        "InvalidImageName",
        "fetch waits",
    )

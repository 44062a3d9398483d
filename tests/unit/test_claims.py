"""A missing PersistentVolumeClaim fails the experiment, naming the field that holds it, once a pod has
waited past the grace period to start; a claim that exists, or a pod that has not waited long, does not."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.operator.claims import ClaimCheck, claims, longest_wait
from kubenas.operator.failures import ExperimentLog, Fatal
from kubenas.operator.grace import GRACE_S as CLAIM_GRACE_S
from kubenas.operator.kube import ApiError, NotFound
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


def pod(name: str, waited: float, running: bool = False, ended: bool = False) -> PodView:
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


def check(api: Api) -> tuple[ClaimCheck, list[float]]:
    wakes: list[float] = []
    log = ExperimentLog(logging.getLogger("test"), {})
    return ClaimCheck(api, "ns", log, wakes.append), wakes  # type: ignore[arg-type]


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
    claim_check, wakes = check(api)
    the_spec = spec(volumes=[DATASETS])
    asyncio.run(claim_check(the_spec, [pod("p", CLAIM_GRACE_S - 10)], NOW))
    assert api.gets == 0 and wakes == [pytest.approx(10.5)]  # not yet: looked up when the grace ends
    with pytest.raises(Fatal) as failed:
        asyncio.run(claim_check(the_spec, [pod("p", CLAIM_GRACE_S + 5)], NOW))
    assert failed.value.reason == "ClaimNotFound"
    assert failed.value.message.startswith(
        "spec.trialTemplate.template.spec.volumes[0].persistentVolumeClaim.claimName: "
        "no PersistentVolumeClaim 'datasets' in namespace ns; the pod p has waited 35s"
    )


def test_claims_that_exist_keep_the_pods_waiting_and_are_looked_up_at_most_every_half_grace() -> None:
    api = Api({"store"})
    claim_check, _ = check(api)
    for _ in range(3):
        asyncio.run(claim_check(spec(), [pod("p", CLAIM_GRACE_S + 5)], NOW))
    assert api.gets == 1
    claim_check.gate.checked -= CLAIM_GRACE_S  # half a grace period later
    asyncio.run(claim_check(spec(), [pod("p", CLAIM_GRACE_S + 5)], NOW))
    assert api.gets == 2


def test_claims_that_cannot_be_read_keep_the_pods_waiting() -> None:
    api = Api(set(), error=ApiError(403, "Forbidden", "cannot get persistentvolumeclaims"))
    claim_check, _ = check(api)
    asyncio.run(claim_check(spec(), [pod("p", CLAIM_GRACE_S + 5)], NOW))
    assert api.gets == 1
    running = Api(set())
    claim_check, _ = check(running)
    asyncio.run(claim_check(spec(), [pod("p", 300, running=True)], NOW))  # started: nothing to look up
    assert running.gets == 0

"""Failing trials: kills are retried per policy, bad candidates are not, too many failures end the search."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubenas.api.admission_policy import POLICY_NAME
from kubenas.api.settings import MAX_SETTINGS_WEIGHT, heavy_message
from kubenas.operator import names
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import (
    Kube,
    OperatorProcess,
    condition,
    experiment_manifest,
    install_admission_policy,
    wait_for,
)
from tests.e2e.test_operator_artifacts import bound_claim

__all__ = ["crds", "kube", "kubenas_operator"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

ONE_EDGE = {"hyperparameters": [{"name": "op", "type": "categorical", "choices": ["conv", "broken"]}]}


def trainer_pods(kube: Kube, trial: str) -> list[Any]:
    return sorted(kube.pods(f"{names.LABEL_TRIAL}={trial}"), key=lambda p: p.metadata.creation_timestamp)


def test_a_killed_trainer_is_retried_and_a_bad_candidate_is_not(
    kube: Kube, kubenas_operator: OperatorProcess, faults: Any, namespace: str
) -> None:
    manifest = experiment_manifest(
        "flaky",
        max_trials=2,
        parallel=2,
        search_space=ONE_EDGE,
        strategy={"name": "grid", "seed": 0, "grid": {"shuffle": False}},
        settings={"sleep_s": 4, "fail_on": "broken"},
    )
    kube.apply_experiment(manifest)
    trials = wait_for("two trials", lambda: len(kube.trials("flaky")) == 2 and kube.trials("flaky"), timeout=90)
    good = next(t["metadata"]["name"] for t in trials if t["spec"]["architecture"]["op"] == "conv")
    bad = next(t["metadata"]["name"] for t in trials if t["spec"]["architecture"]["op"] == "broken")

    def running_pod() -> Any:
        pods = trainer_pods(kube, good)
        return pods and pods[0].status.phase == "Running" and pods[0]

    first = wait_for("the good trial's pod to run", running_pod, timeout=90)
    faults.kill(namespace, first.metadata.name, 137)  # as the OOM killer would

    exp = kube.wait_phase("flaky", timeout=180)
    by_name = {t["metadata"]["name"]: t for t in kube.trials("flaky")}
    assert by_name[good]["status"]["phase"] == "Succeeded"
    assert by_name[good]["status"]["attempts"] == 2  # killed once, retried once
    assert len(trainer_pods(kube, good)) == 2
    assert by_name[bad]["status"]["phase"] == "Failed"
    assert by_name[bad]["status"]["reason"] == "BadCandidate"
    assert len(trainer_pods(kube, bad)) == 1  # exit 3 is never retried (podFailurePolicy FailJob)
    bad_job = kube.batch.read_namespaced_job(bad, namespace)
    assert any(c.type == "Failed" and c.reason == "PodFailurePolicy" for c in bad_job.status.conditions)
    assert exp["status"]["phase"] == "Succeeded"
    assert exp["status"]["trials"]["failed"] == 1
    assert "TrialFailed" in {e.reason for e in kube.events("flaky")}


def test_too_many_failed_trials_fail_the_experiment_with_its_reason(
    kube: Kube, kubenas_operator: OperatorProcess
) -> None:
    manifest = experiment_manifest(
        "doomed",
        max_trials=10,
        parallel=2,
        command=["sh", "-c", "exit 3"],
        budget={"maxFailedTrials": 2},
    )
    kube.apply_experiment(manifest)
    exp = kube.wait_phase("doomed", timeout=180)
    assert exp["status"]["phase"] == "Failed"
    failed = condition(exp, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "TooManyFailures"
    assert "maxFailedTrials=2" in failed["message"]
    assert exp["status"]["trials"]["failed"] >= 3
    assert exp["status"]["trials"]["total"] < 10
    assert "TooManyFailures" in {e.reason for e in kube.events("doomed")}


def test_settings_too_heavy_for_the_environment_are_refused_by_the_api_server(kube: Kube) -> None:
    # CRD rules cannot see inside free-form settings; the admission policy weighs them with the model's measure
    manifest = experiment_manifest("hoarder", max_trials=2, settings={"blob": "x" * MAX_SETTINGS_WEIGHT})
    with pytest.raises(ApiException) as err:
        kube.apply_experiment(manifest)
    assert err.value.status == 422
    message = json.loads(err.value.body)["message"]
    assert f"spec.trialTemplate.settings: {heavy_message(MAX_SETTINGS_WEIGHT + 19)}" in message
    assert kube.experiment("hoarder") is None


def test_settings_stored_without_the_policy_fail_the_experiment_before_any_trial(
    kube: Kube, kubenas_operator: OperatorProcess
) -> None:
    # an experiment stored where the policy is missing (deleted, or CRDs applied without the chart): the
    # operator, parsing with the API's own model, refuses it with the same words rather than start trials
    # whose containers the kernel would refuse (one environment string is capped at 128 KiB)
    manifest = experiment_manifest("hoarder", max_trials=2, settings={"blob": "x" * MAX_SETTINGS_WEIGHT})
    adm = client.AdmissionregistrationV1Api(kube.api)
    adm.delete_validating_admission_policy_binding(POLICY_NAME)
    try:
        wait_for("the experiment stored without the policy", lambda: _created(kube, manifest), timeout=60)
    finally:
        install_admission_policy(kube.api)
    exp = kube.wait_phase("hoarder", timeout=60)
    assert exp["status"]["phase"] == "Failed"
    failed = condition(exp, "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert failed["message"] == f"spec.trialTemplate.settings: {heavy_message(MAX_SETTINGS_WEIGHT + 19)}"
    assert kube.trials("hoarder") == []


def _created(kube: Kube, manifest: dict[str, Any]) -> bool:
    """Create ``manifest``; False while the API server still refuses it (a policy's removal takes a moment)."""
    try:
        kube.apply_experiment(manifest)
    except ApiException as exc:
        if exc.status != 422:
            raise
        return False
    return True


def test_a_queue_name_no_local_queue_answers_to_fails_the_experiment_instead_of_waiting(
    kube: Kube, kubenas_operator: OperatorProcess
) -> None:
    # Jobs go to the queue suspended; with no such LocalQueue (a typo, or no Kueue) none would ever run
    manifest = experiment_manifest("misqueued", max_trials=2)
    manifest["spec"]["queueName"] = "no-such-queue"
    kube.apply_experiment(manifest)
    exp = kube.wait_phase("misqueued", timeout=120)
    assert exp["status"]["phase"] == "Failed"
    failed = condition(exp, "Failed")
    assert failed["reason"] == "QueueNotFound"
    assert failed["message"].startswith("spec.queueName: no LocalQueue 'no-such-queue'")
    assert all(job.spec.suspend for job in kube.jobs("misqueued"))  # nothing ran meanwhile


def test_an_artifact_store_claim_that_does_not_exist_fails_the_experiment_instead_of_waiting(
    kube: Kube, kubenas_operator: OperatorProcess
) -> None:
    """The trial's pod is created, and the scheduler keeps it Pending for want of the claim, for ever;
    so does a one-shot search's supernet pod (ENAS: created once the controller is up, after which
    nothing else wakes the experiment but the pod itself)."""
    manifest = experiment_manifest("unclaimed", max_trials=2)
    manifest["spec"]["artifacts"] = {"persistentVolumeClaim": "no-such-claim"}
    kube.apply_experiment(manifest)
    enas = yaml.safe_load((EXAMPLES / "digits-enas.yaml").read_text())
    enas["metadata"]["name"] = "unclaimed-enas"
    enas["spec"]["artifacts"] = {"persistentVolumeClaim": "no-such-claim"}
    kube.apply_experiment(enas)
    for name, pod in (("unclaimed", "unclaimed-00000-"), ("unclaimed-enas", "unclaimed-enas-supernet-")):
        exp = kube.wait_phase(name, timeout=120)
        assert exp["status"]["phase"] == "Failed"
        failed = condition(exp, "Failed")
        assert failed["reason"] == "ClaimNotFound"
        field = "spec.artifacts.persistentVolumeClaim"
        expected = f"{field}: no PersistentVolumeClaim 'no-such-claim' in namespace {kube.namespace}; the pod {pod}"
        assert failed["message"].startswith(expected), failed["message"]
    assert not [t for t in kube.trials("unclaimed") if (t.get("status") or {}).get("phase") == "Succeeded"]


def test_a_secret_that_does_not_exist_fails_the_experiment_instead_of_waiting(
    kube: Kube, kubenas_operator: OperatorProcess, tmp_path: Path
) -> None:
    """The kubelet cannot create the trainer container (CreateContainerConfigError) and retries for
    ever; so for a one-shot search's supernet pod, which has no Job controller giving up on it."""
    missing = {"spec": {"containers": [{"name": "trainer", "envFrom": [{"secretRef": {"name": "no-such-secret"}}]}]}}
    manifest = experiment_manifest("unsecret", max_trials=2, template={"template": missing})
    kube.apply_experiment(manifest)
    pv = bound_claim(kube, tmp_path / "pv", "kubenas-artifacts")  # the example's store: only the Secret is missing
    oneshot = yaml.safe_load((EXAMPLES / "digits-oneshot.yaml").read_text())
    oneshot["metadata"]["name"] = "unsecret-oneshot"
    oneshot["spec"]["trialTemplate"]["template"] = missing
    kube.apply_experiment(oneshot)
    try:
        for name, pod in (("unsecret", "unsecret-00000-"), ("unsecret-oneshot", "unsecret-oneshot-supernet-")):
            exp = kube.wait_phase(name, timeout=120)
            assert exp["status"]["phase"] == "Failed"
            failed = condition(exp, "Failed")
            assert failed["reason"] == "PodCannotStart"
            expected = f"spec.trialTemplate (a Secret or ConfigMap its pods reference): the pod {pod}"
            assert failed["message"].startswith(expected), failed["message"]
            assert 'CreateContainerConfigError: secret "no-such-secret" not found' in failed["message"]
    finally:
        kube.core.delete_persistent_volume(pv)
    assert not [t for t in kube.trials("unsecret") if (t.get("status") or {}).get("phase") == "Succeeded"]

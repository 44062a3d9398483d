"""Reading watched objects back: pod and Job views, and when a trial is over."""

from __future__ import annotations

import json
from typing import Any

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.driver import Driver, Tell
from kubenas.core.records import TrialRecord
from kubenas.operator.outcomes import attempts, decided, deciding_pod, events_of, is_running, started_at
from kubenas.operator.views import EndpointView, JobView, PodView, TrialView
from tests.conftest import experiment_dict


def pod(
    name: str = "p1",
    *,
    created: str = "2025-01-01T00:00:00Z",
    running: bool = False,
    exit_code: int | None = None,
    message: str | None = None,
    disrupted: bool = False,
) -> PodView:
    state: dict[str, Any] = {}
    if running:
        state = {"running": {"startedAt": "2025-01-01T00:00:01Z"}}
    if exit_code is not None:
        state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "message": message,
                "startedAt": "2025-01-01T00:00:01Z",
                "finishedAt": "2025-01-01T00:00:11Z",
            }
        }
    body = {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": "5",
            "creationTimestamp": created,
            "labels": {"kubenas.io/trial": "exp-00001"},
            "ownerReferences": [{"uid": "uid-job", "controller": True}],
        },
        "status": {
            "containerStatuses": [{"name": "trainer", "state": state}],
            "conditions": [{"type": "DisruptionTarget", "status": "True"}] if disrupted else [],
        },
    }
    return PodView.parse(body)


def job(*conditions: tuple[str, str]) -> JobView:
    return JobView.parse(
        {
            "metadata": {"name": "exp-00001", "uid": "uid-job", "labels": {"kubenas.io/trial": "exp-00001"}},
            "status": {
                "conditions": [
                    {"type": t, "status": "True", "reason": r, "message": f"{r} happened"} for t, r in conditions
                ]
            },
        }
    )


def result(**kw: Any) -> str:
    return json.dumps(kw)


def test_pod_view_reads_the_trainer_container_and_owner() -> None:
    p = pod(exit_code=0, message=result(val_accuracy=0.9))
    assert p.trial == "exp-00001"
    assert p.owner_uid == "uid-job"
    assert p.terminated is not None and p.terminated.exit_code == 0
    assert p.terminated.seconds() == 10.0
    assert pod(running=True).running_since == "2025-01-01T00:00:01Z"
    assert pod(disrupted=True).disrupted


def judged(
    pods: list[PodView], job_view: JobView | None, retries: int, pods_listed: bool = False
) -> TrialRecord | None:
    """What the driver makes of the events a trial's pods and Job give: the told record, or None."""
    spec = SearchExperimentSpec.model_validate(
        experiment_dict(trialTemplate={"command": ["t"], "retries": retries})["spec"]
    )
    driver = Driver(spec, [TrialRecord(index=0, architecture={}, name="exp-00000")], name_prefix="exp")
    told = [c for c in driver.handle(*events_of(0, pods, job_view, pods_listed)) if isinstance(c, Tell)]
    return told[0].trial if told else None


def test_success_is_read_from_the_pod_without_waiting_for_the_job() -> None:
    pods = [pod(exit_code=0, message=result(val_accuracy=0.9, params=10))]
    out = judged(pods, None, retries=2)
    assert out is not None and out.phase == "Succeeded"
    assert out.metrics == {"val_accuracy": 0.9, "params": 10.0}
    assert deciding_pod(pods) is pods[0] and started_at(pods) == "2025-01-01T00:00:01Z"


def test_bad_candidate_exit_fails_at_once() -> None:
    out = judged([pod(exit_code=3, message=result(status="bad_candidate", message="no path"))], None, 5)
    assert out is not None and out.phase == "Failed" and out.reason == "BadCandidate"
    assert out.message == "no path"


def test_exit_zero_without_metrics_is_a_failure() -> None:
    out = judged([pod(exit_code=0, message=None)], None, 2)
    assert out is not None and out.phase == "Failed" and out.reason == "MissingResult"


def test_a_killed_pod_is_left_to_the_job_to_retry() -> None:
    assert not decided(events_of(0, [pod(exit_code=137)], job()))
    assert judged([pod(exit_code=137)], job(), 2) is None
    second = [
        pod("p1", exit_code=137),
        pod("p2", created="2025-01-01T00:01:00Z", exit_code=0, message=result(val_accuracy=0.5)),
    ]
    out = judged(second, job(), 2)
    assert out is not None and out.phase == "Succeeded" and out.attempts == 2
    assert deciding_pod(second) is second[1]
    assert attempts(second) == 2


def test_job_failure_is_final_with_a_reason() -> None:
    out = judged([pod(exit_code=137), pod("p2", exit_code=137)], job(("Failed", "BackoffLimitExceeded")), 1)
    assert out is not None and out.phase == "Failed" and out.reason == "RetriesExhausted"
    assert "exit code 137" in (out.message or "")
    deadline = judged([pod(running=True)], job(("Failed", "DeadlineExceeded")), 1)
    assert deadline is not None and deadline.reason == "DeadlineExceeded"


def test_a_complete_job_without_a_pod_result_is_only_judged_after_listing_pods() -> None:
    assert judged([], job(("Complete", "")), 2) is None  # the pod event may still be on its way
    lost = judged([], job(("Complete", "")), 2, pods_listed=True)
    assert lost is not None and lost.reason == "ResultLost"


def test_running_and_start_time() -> None:
    assert is_running([pod(running=True)])
    assert not is_running([pod(exit_code=0)])
    assert started_at([pod(running=True)]) == "2025-01-01T00:00:01Z"
    assert started_at([pod()]) is None


def test_trial_view_round_trips_the_history_fields() -> None:
    view = TrialView.parse(
        {
            "metadata": {
                "name": "exp-00002",
                "uid": "u",
                "resourceVersion": "42",
                "ownerReferences": [{"uid": "uid-exp", "controller": True}],
            },
            "spec": {"experiment": "exp", "index": 2, "architecture": {"a": 1}, "architectureId": "a=1", "seed": 9},
            "status": {
                "phase": "Succeeded",
                "reward": 0.5,
                "metrics": {"val_accuracy": 0.5},
                "tellSequence": 0,
                "asksBeforeTell": 3,
            },
        }
    )
    rec = view.record()
    assert (rec.index, rec.name, rec.phase, rec.reward, rec.tell_sequence, rec.asks_before_tell) == (
        2,
        "exp-00002",
        "Succeeded",
        0.5,
        0,
        3,
    )
    assert view.resource_version == 42 and view.owner_uid == "uid-exp" and view.done
    spec = {"experiment": "exp", "index": 3, "architecture": {"a": 2}, "architectureId": "a=2"}
    fresh = TrialView.parse({"metadata": {"name": "exp-00003"}, "spec": spec})
    assert fresh.phase == "Pending" and not fresh.done and fresh.record().tell_sequence is None


def test_endpoint_view_keeps_ready_addresses_only() -> None:
    view = EndpointView.parse(
        {
            "metadata": {"name": "exp-controller-abc", "labels": {"kubernetes.io/service-name": "exp-controller"}},
            "endpoints": [
                {"addresses": ["127.0.1.2"], "conditions": {"ready": True}},
                {"addresses": ["127.0.1.3"], "conditions": {"ready": False}},
            ],
            "ports": [{"name": "http", "port": 8080}],
        }
    )
    assert (view.service, view.addresses, view.port) == ("exp-controller", ("127.0.1.2",), 8080)

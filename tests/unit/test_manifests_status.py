"""Experiment and trial status, and which spec edits a running experiment accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubenas.api.v1alpha1 import SearchExperimentSpec, TrialStatus
from kubenas.core.codec import status_wire
from kubenas.core.engine import summarize
from kubenas.core.records import TrialRecord
from kubenas.core.spec_changes import judge_edit
from kubenas.operator import status

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def spec(**budget: Any) -> SearchExperimentSpec:
    return SearchExperimentSpec.model_validate(
        {
            "searchSpace": {"cell": {"nodes": 3, "operations": ["none", "nor_conv_3x3"]}},
            "strategy": {"name": "random", "seed": 1},
            "objective": {"metric": "loss", "direction": "minimize"},
            "budget": {"maxTrials": 10, "parallelTrials": 2, **budget},
            "trialTemplate": {"image": "t:1", "command": ["train"]},
        }
    )


def rec(index: int, phase: str = "Succeeded", reward: float | None = None) -> TrialRecord:
    return TrialRecord(
        index=index,
        architecture={"edge_1_0": "none"},
        name=f"e-{index:05d}",
        phase=phase,
        reward=reward,
        metrics={"loss": -reward} if reward is not None else {},
    )


def build(
    current: dict[str, Any] | None = None,
    verdict: status.Verdict | None = None,
    now: datetime = NOW,
    trials: list[TrialRecord] | None = None,
) -> dict[str, Any]:
    history = (
        trials
        if trials is not None
        else [rec(0, reward=-0.5), rec(1, reward=-0.2), rec(2, "Failed"), rec(3, "Running")]
    )
    return status.experiment_status(
        current=current or {},
        spec=spec(),
        summary=summarize(spec(), history),
        verdict=verdict or status.Verdict("Running", "Running", "1 trial active"),
        controller_ready=(True, "Ready", "controller at 127.0.0.2"),
        spec_verdict=status.SpecVerdict(True),
        generation=3,
        now=now,
    )


def conditions(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st["conditions"]}


def test_status_counts_progress_and_best_in_the_objective_direction() -> None:
    st = build()
    assert st["trials"] == {
        "pending": 0,
        "running": 1,
        "succeeded": 2,
        "failed": 1,
        "infeasible": 0,
        "pruned": 0,
        "total": 4,
    }
    assert st["progress"] == "3/10"
    assert st["bestTrial"]["name"] == "e-00001"
    assert st["bestReward"] == 0.2  # the loss, not the signed reward
    assert st["observedGeneration"] == 3
    assert conditions(st)["Running"]["status"] == "True"
    assert conditions(st)["ControllerReady"]["reason"] == "Ready"
    assert "completionTime" not in st


def test_terminal_status_has_a_reason_condition_and_completion_time() -> None:
    st = build(verdict=status.Verdict("Succeeded", "MaxTrialsReached", "ran maxTrials=10 trials"))
    c = conditions(st)
    assert (c["Succeeded"]["status"], c["Succeeded"]["reason"]) == ("True", "MaxTrialsReached")
    assert (c["Running"]["status"], c["Running"]["reason"]) == ("False", "MaxTrialsReached")
    assert st["completionTime"] == "2025-01-01T00:00:00Z"


def test_an_unchanged_status_is_not_rewritten_and_keeps_transition_times() -> None:
    first = build()
    later = build(current=first, now=NOW + timedelta(minutes=5))
    assert not status.status_changed(first, later)
    assert later["startTime"] == first["startTime"]
    moved = build(current=first, now=NOW + timedelta(minutes=5), trials=[rec(0, reward=-0.5)])
    assert status.status_changed(first, moved)
    assert conditions(moved)["Running"]["lastTransitionTime"] == conditions(first)["Running"]["lastTransitionTime"]


def test_condition_transition_time_moves_only_when_status_flips() -> None:
    c1 = status.set_condition([], "Ready", True, "A", "", NOW, 1)
    c2 = status.set_condition(c1, "Ready", True, "B", "other", NOW + timedelta(hours=1), 2)
    assert c2[0]["lastTransitionTime"] == c1[0]["lastTransitionTime"] and c2[0]["reason"] == "B"
    c3 = status.set_condition(c2, "Ready", False, "C", "", NOW + timedelta(hours=2), 2)
    assert c3[0]["lastTransitionTime"] == "2025-01-01T02:00:00Z"


def test_a_trial_status_is_the_records_fields_in_the_api_shape() -> None:
    rec = TrialRecord(
        index=4,
        architecture={"a": 1},
        name="exp-00004",
        phase="Succeeded",
        reward=0.9,
        metrics={"val_accuracy": 0.9},
        attempts=2,
        tell_sequence=4,
        asks_before_tell=7,
    )
    st = status_wire(rec, start_time="2025-01-01T00:00:01Z", completion_time="2025-01-01T00:00:09Z")
    assert (st["phase"], st["reward"], st["tellSequence"], st["asksBeforeTell"], st["attempts"]) == (
        "Succeeded",
        0.9,
        4,
        7,
        2,
    )
    assert (st["startTime"], st["completionTime"]) == ("2025-01-01T00:00:01Z", "2025-01-01T00:00:09Z")
    TrialStatus.model_validate(st)  # the API's own model reads it back
    failed = status_wire(rec.with_(phase="Failed", reward=None, reason="BadCandidate", message="no path"))
    assert (failed["reason"], failed["message"], "reward" in failed) == ("BadCandidate", "no path", False)


def test_raising_max_trials_and_changing_parallelism_take_effect() -> None:
    new, verdict = judge_edit(spec(), spec(maxTrials=20, parallelTrials=5))
    assert verdict.accepted
    assert (new.budget.max_trials, new.budget.parallel_trials) == (20, 5)
    assert "maxTrials 10 → 20" in verdict.message


def test_other_edits_are_refused_with_the_field_path() -> None:
    edited = spec().model_copy(update={"strategy": spec().strategy.model_copy(update={"seed": 2})})
    kept, verdict = judge_edit(spec(), edited)
    assert not verdict.accepted and verdict.reason == "ImmutableField"
    assert "spec.strategy.seed" in verdict.message
    assert kept == spec()


def test_lowering_max_trials_is_refused() -> None:
    kept, verdict = judge_edit(spec(maxTrials=10), spec(maxTrials=5, parallelTrials=2))
    assert not verdict.accepted and verdict.reason == "MaxTrialsLowered"
    assert kept.budget.max_trials == 10


def test_an_unchanged_spec_is_accepted_as_is() -> None:
    s = spec()
    kept, verdict = judge_edit(s, spec())
    assert kept is s and verdict.accepted

"""The experiment engine: what to do next for a given spec and history."""

from __future__ import annotations

import random
from typing import Any

import pytest

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.engine import Ask, Finish, Wait, count, decide, summarize
from kubenas.core.records import TrialRecord, best_of, reward_of, violations
from tests.conftest import experiment_dict


def spec(**overrides: Any) -> SearchExperimentSpec:
    return SearchExperimentSpec.model_validate(experiment_dict(**overrides)["spec"])


def trials(*phases: str, rewards: list[float] | None = None) -> list[TrialRecord]:
    out = []
    for i, p in enumerate(phases):
        r = (rewards[i] if rewards else 0.5) if p == "Succeeded" else None
        out.append(TrialRecord(index=i, architecture={}, name=f"t-{i}", phase=p, reward=r))  # type: ignore[arg-type]
    return out


def test_empty_history_asks_for_parallel_trials() -> None:
    assert decide(spec(budget={"maxTrials": 10, "parallelTrials": 3}), []) == Ask(3)


def test_asks_only_for_free_slots_and_what_the_budget_allows() -> None:
    s = spec(budget={"maxTrials": 5, "parallelTrials": 3})
    assert decide(s, trials("Running", "Succeeded")) == Ask(2)
    assert decide(s, trials("Succeeded", "Succeeded", "Succeeded", "Running")) == Ask(1)
    assert isinstance(decide(s, trials("Running", "Running", "Pending")), Wait)


def test_max_trials_waits_for_running_then_finishes() -> None:
    s = spec(budget={"maxTrials": 3, "parallelTrials": 2})
    assert isinstance(decide(s, trials("Succeeded", "Succeeded", "Running")), Wait)
    assert decide(s, trials("Succeeded", "Failed", "Succeeded")) == Finish(
        "Succeeded", "MaxTrialsReached", "ran maxTrials=3 trials"
    )


def test_no_success_at_all_fails() -> None:
    s = spec(budget={"maxTrials": 2})
    action = decide(s, trials("Failed", "Infeasible"))
    assert isinstance(action, Finish) and action.phase == "Failed" and action.reason == "NoTrialSucceeded"


def test_too_many_failures_fails_at_once_even_with_trials_running() -> None:
    s = spec(budget={"maxTrials": 10, "parallelTrials": 3, "maxFailedTrials": 1})
    assert isinstance(decide(s, trials("Failed", "Running")), Ask)
    action = decide(s, trials("Failed", "Failed", "Running"))
    assert isinstance(action, Finish) and (action.phase, action.reason) == ("Failed", "TooManyFailures")


def test_goal_reached_finishes_in_either_direction() -> None:
    s = spec(objective={"metric": "val_accuracy", "target": 0.9})
    assert decide(s, trials("Succeeded", "Running", rewards=[0.95, 0])).reason == "GoalReached"  # type: ignore[union-attr]
    assert isinstance(decide(s, trials("Succeeded", rewards=[0.85])), Ask)
    low = spec(objective={"metric": "loss", "direction": "minimize", "target": 0.1})
    assert decide(low, trials("Succeeded", rewards=[-0.05])).reason == "GoalReached"  # type: ignore[union-attr]
    assert isinstance(decide(low, trials("Succeeded", rewards=[-0.2])), Ask)


def test_deadline_stops_new_trials_then_finishes() -> None:
    s = spec(budget={"maxTrials": 10, "parallelTrials": 2, "maxDuration": "1m"})
    assert isinstance(decide(s, trials("Succeeded"), elapsed_seconds=30), Ask)
    assert isinstance(decide(s, trials("Succeeded", "Running"), elapsed_seconds=61), Wait)
    action = decide(s, trials("Succeeded", "Succeeded"), elapsed_seconds=61)
    assert isinstance(action, Finish) and action.reason == "DeadlineExceeded"


def test_decisions_are_pure() -> None:
    s = spec(budget={"maxTrials": 4, "parallelTrials": 2})
    h = trials("Succeeded", "Running")
    assert decide(s, h, 5.0) == decide(s, list(h), 5.0)


def test_reward_sign_constraints_and_soft_penalty() -> None:
    s = spec(
        objective={
            "metric": "acc",
            "constraints": [
                {"metric": "params", "max": 100},
                {"metric": "latency", "max": 10, "mode": "soft", "weight": 1},
            ],
        }
    )
    assert reward_of(s.objective, {"acc": 0.9, "params": 50, "latency": 5}) == (0.9, True)
    assert reward_of(s.objective, {"acc": 0.9, "params": 150, "latency": 5})[1] is False
    assert reward_of(s.objective, {"acc": 0.9, "params": 50, "latency": 20}) == (pytest.approx(0.45), True)
    low = spec(objective={"metric": "loss", "direction": "minimize"})
    assert reward_of(low.objective, {"loss": 0.3}) == (-0.3, True)


def test_an_infeasible_result_says_which_constraint_and_by_how_much() -> None:
    """ConstraintViolated names the bound crossed, or the constrained metric the trial never reported
    (a NaN counts as not reported: it cannot be shown to hold)."""
    s = spec(
        objective={
            "metric": "acc",
            "constraints": [{"metric": "params", "max": 100}, {"metric": "latency", "min": 2}],
        }
    )
    assert violations(s.objective, {"acc": 0.9, "params": 50, "latency": 5}) == []
    assert violations(s.objective, {"acc": 0.9, "params": 150, "latency": 1}) == [
        "params 150 is above max 100",
        "latency 1 is below min 2",
    ]
    assert violations(s.objective, {"acc": 0.9, "params": float("nan")}) == [
        "params was not reported",
        "latency was not reported",
    ]
    assert reward_of(s.objective, {"acc": 0.9, "params": float("nan"), "latency": 5})[1] is False


def test_the_one_pass_summary_agrees_with_count_and_best_of() -> None:
    """summarize() runs on every reconcile over the whole history; it must give exactly what the
    plain definitions give, ties (earliest wins) and non-finite rewards included."""
    rng = random.Random(7)
    phases = ["Pending", "Running", "Succeeded", "Succeeded", "Failed", "Infeasible"]
    rewards = [0.5, 0.5, 0.9, 0.9, float("nan"), float("inf"), -1.0, None]
    for _ in range(300):
        history = [
            TrialRecord(index=i, architecture={}, name=f"t{i}", phase=phase, reward=rng.choice(rewards))  # type: ignore[arg-type]
            for i, phase in enumerate(rng.choices(phases, k=rng.randint(0, 40)))
        ]
        counts, best = summarize(spec(), history)
        assert counts == count(history)
        assert best is best_of(history)


def test_refused_configurations_end_a_search_only_before_any_result() -> None:
    s = spec(budget={"maxTrials": 10, "parallelTrials": 2})
    refused = [t.with_(reason="ConfigurationError") for t in trials("Failed", "Failed", "Failed")]
    action = decide(s, refused)
    assert isinstance(action, Finish) and (action.phase, action.reason) == ("Failed", "ConfigurationError")
    assert isinstance(decide(s, refused[:2]), Ask)
    crashed = [t.with_(reason="Error") for t in trials("Failed", "Failed", "Failed")]
    assert isinstance(decide(s, crashed), Ask)  # crashes are retried and counted by maxFailedTrials
    after_a_result = trials("Succeeded") + [t.with_(index=t.index + 1) for t in refused]
    assert isinstance(decide(s, after_a_result), Ask)

"""The experiment driver: the one loop every adapter executes, and the invariants replay relies on."""

from __future__ import annotations

import json
import random
from typing import Any

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.driver import (
    AskFor,
    AttemptEnded,
    AttemptStarted,
    Cancel,
    Candidate,
    Command,
    Create,
    Driver,
    Finish,
    Interrupted,
    MarkRunning,
    Proposed,
    Relaunch,
    ResultStored,
    Store,
    Tell,
    Tick,
    TrialLost,
)
from kubenas.core.inprocess import InProcess
from kubenas.core.search import Search
from kubenas.local.toy_trial import score
from tests.conftest import experiment_dict


def spec(**overrides: Any) -> SearchExperimentSpec:
    return SearchExperimentSpec.model_validate(experiment_dict(**overrides)["spec"])


def result(value: float) -> str:
    return json.dumps({"val_accuracy": value})


def of(kind: type, commands: list[Command]) -> list[Any]:
    return [c for c in commands if isinstance(c, kind)]


def propose(driver: Driver, ask: AskFor) -> list[Command]:
    candidates = tuple(Candidate(i, {"x": i}, f"x={i}") for i in range(ask.index, ask.index + ask.count))
    return driver.handle(Proposed(candidates))


def test_it_asks_for_free_slots_once_and_creates_what_was_proposed() -> None:
    driver = Driver(spec(budget={"maxTrials": 5, "parallelTrials": 3}), name_prefix="exp")
    (ask,) = driver.start()
    assert ask == AskFor(0, 3)
    assert driver.handle(Tick(1.0)) == []  # the three asked count as active: never asked twice
    creates = of(Create, propose(driver, ask))
    assert [c.trial.name for c in creates] == ["exp-00000", "exp-00001", "exp-00002"]
    assert len({c.seed for c in creates}) == 3
    assert driver.counts.pending == 3


def test_a_result_is_told_then_stored_with_its_place_in_tell_order() -> None:
    driver = Driver(spec(budget={"maxTrials": 6, "parallelTrials": 2}))
    propose(driver, driver.start()[0])
    commands = driver.handle(AttemptStarted(1), AttemptEnded(1, 1, 0, result(0.8)))
    assert isinstance(commands[0], MarkRunning)
    tell, store, ask = commands[1:]
    assert isinstance(tell, Tell) and isinstance(store, Store) and ask == AskFor(2, 1)
    assert (tell.trial.phase, tell.trial.reward, tell.trial.tell_sequence, tell.trial.asks_before_tell) == (
        "Succeeded",
        0.8,
        0,
        2,
    )
    assert driver.best is not None and driver.best.index == 1


def test_a_candidate_asked_after_a_tell_is_created_only_once_that_result_is_stored() -> None:
    driver = Driver(spec(budget={"maxTrials": 6, "parallelTrials": 2}))
    propose(driver, driver.start()[0])
    *_, ask = driver.handle(AttemptEnded(0, 1, 0, result(0.5)))
    assert of(Create, propose(driver, ask)) == []  # held: the tell before it is not stored yet
    released = of(Create, driver.handle(ResultStored(0)))
    assert [c.trial.index for c in released] == [2]


def test_an_ask_in_flight_counts_in_the_tell_position() -> None:
    """Commands that touch the strategy are carried out in order, so a Tell emitted after an AskFor
    reaches the strategy after those asks: its asksBeforeTell must count them."""
    driver = Driver(spec(budget={"maxTrials": 6, "parallelTrials": 2}))
    ask = driver.start()[0]
    propose(driver, ask)
    *_, second_ask = driver.handle(AttemptEnded(0, 1, 0, result(0.5)))  # AskFor(2, 1) not answered yet
    (tell,) = of(Tell, driver.handle(AttemptEnded(1, 1, 0, result(0.6))))
    assert tell.trial.asks_before_tell == second_ask.index + second_ask.count


def test_retries_then_failure_and_bad_candidates_are_never_retried() -> None:
    driver = Driver(spec(budget={"maxTrials": 4, "parallelTrials": 2}, trialTemplate={"command": ["t"], "retries": 1}))
    propose(driver, driver.start()[0])
    (relaunch,) = of(Relaunch, driver.handle(AttemptEnded(0, 1, 137)))
    assert (relaunch.trial.index, relaunch.attempt, relaunch.reason) == (0, 2, "Killed")
    assert driver.handle(AttemptEnded(0, 1, 137)) == []  # the same attempt reported twice
    (tell,) = of(Tell, driver.handle(AttemptEnded(0, 2, 137)))
    assert (tell.trial.phase, tell.trial.reason, tell.trial.attempts) == ("Failed", "Killed", 2)
    (bad,) = of(Tell, driver.handle(AttemptEnded(1, 1, 3, json.dumps({"message": "too big"}))))
    assert (bad.trial.phase, bad.trial.reason, bad.trial.message) == ("Failed", "BadCandidate", "too big")


def test_the_runtime_giving_a_trial_up_fails_it_once() -> None:
    driver = Driver(spec())
    propose(driver, driver.start()[0])
    (tell,) = of(Tell, driver.handle(TrialLost(0, "DeadlineExceeded", "ran past 60s", attempts=1)))
    assert (tell.trial.phase, tell.trial.reason, tell.trial.attempts) == ("Failed", "DeadlineExceeded", 1)
    assert driver.handle(TrialLost(0, "DeadlineExceeded")) == []
    assert driver.handle(AttemptEnded(0, 1, 0, result(0.9))) == []  # a late result changes nothing


def test_missing_metric_and_hard_constraint() -> None:
    driver = Driver(spec(objective={"metric": "val_accuracy", "constraints": [{"metric": "params", "max": 10}]}))
    propose(driver, driver.start()[0])
    (missing,) = of(Tell, driver.handle(AttemptEnded(0, 1, 0, json.dumps({"loss": 0.1}))))
    assert (missing.trial.phase, missing.trial.reason) == ("Failed", "MissingMetric")
    (over,) = of(Tell, driver.handle(AttemptEnded(1, 1, 0, json.dumps({"val_accuracy": 0.9, "params": 20}))))
    assert (over.trial.phase, over.trial.reason) == ("Infeasible", "ConstraintViolated")
    assert over.trial.message == "params 20 is above max 10"


def test_a_diverged_trial_is_the_worst_result_whichever_its_objective() -> None:
    """Training that ended on a non-finite loss reports ``diverged``: with an accuracy still finite it
    succeeds (a poor result); with the loss as the objective, left out as non-finite, it is infeasible
    (the worst result), never a failure counting towards maxFailedTrials."""
    diverged = json.dumps({"val_accuracy": 0.1, "status": "diverged", "message": "training diverged"})
    by_accuracy = Driver(spec())
    propose(by_accuracy, by_accuracy.start()[0])
    (told,) = of(Tell, by_accuracy.handle(AttemptEnded(0, 1, 0, diverged)))
    assert (told.trial.phase, told.trial.reason, told.trial.reward) == ("Succeeded", "Diverged", 0.1)
    by_loss = Driver(spec(objective={"metric": "val_loss", "direction": "minimize"}))
    propose(by_loss, by_loss.start()[0])
    (told,) = of(Tell, by_loss.handle(AttemptEnded(0, 1, 0, diverged)))
    assert (told.trial.phase, told.trial.reason, told.trial.reward) == ("Infeasible", "Diverged", None)
    assert "training diverged" in (told.trial.message or "") and by_loss.counts.failed == 0


def test_trials_refusing_their_configuration_end_the_search_before_any_result() -> None:
    """Every trial shares the settings: three refusals (exit 2) with no result yet end the search,
    running trials cancelled; after a trial has run, refusals are the candidate's and the search goes on."""
    refused = json.dumps({"message": "settings.epoch: is not a setting of this trainer"})
    driver = Driver(spec(budget={"maxTrials": 20, "parallelTrials": 4}))
    propose(driver, driver.start()[0])
    for i in range(2):
        driver.handle(AttemptEnded(i, 1, 2, refused))
        driver.handle(ResultStored(i))
    assert driver.finished is None
    driver.handle(AttemptEnded(2, 1, 2, refused))
    out = driver.handle(ResultStored(2))
    (finish,) = of(Finish, out)
    assert (finish.phase, finish.reason) == ("Failed", "ConfigurationError")
    assert [c.trial.index for c in of(Cancel, out)] == [3]
    ran = Driver(spec(budget={"maxTrials": 20, "parallelTrials": 4}))
    propose(ran, ran.start()[0])
    ran.handle(AttemptEnded(0, 1, 0, result(0.5)))
    ran.handle(ResultStored(0))
    for i in range(1, 4):
        ran.handle(AttemptEnded(i, 1, 2, refused))
        ran.handle(ResultStored(i))
    assert ran.finished is None


def test_goal_reached_cancels_the_rest_once_every_result_is_stored() -> None:
    driver = Driver(
        spec(objective={"metric": "val_accuracy", "target": 0.9}, budget={"maxTrials": 9, "parallelTrials": 3})
    )
    propose(driver, driver.start()[0])
    commands = driver.handle(AttemptEnded(1, 1, 0, result(0.95)))
    assert of(Finish, commands) == []  # the winning result is not stored yet
    commands = driver.handle(ResultStored(1))
    cancels, (finish,) = of(Cancel, commands), of(Finish, commands)
    assert sorted(c.trial.index for c in cancels) == [0, 2]
    assert all(c.trial.reason == "Cancelled" for c in cancels)
    assert (finish.phase, finish.reason) == ("Succeeded", "GoalReached")
    assert driver.finished == finish and driver.handle(AttemptEnded(0, 1, 0, result(0.1))) == []


def test_a_deadline_stops_asking_and_finishes_when_the_running_trials_end() -> None:
    driver = Driver(spec(budget={"maxTrials": 10, "parallelTrials": 2, "maxDuration": "1m"}))
    propose(driver, driver.start()[0])
    assert driver.seconds_to_deadline() == 60
    driver.handle(Tick(61))
    assert of(AskFor, driver.handle(AttemptEnded(0, 1, 0, result(0.5)), ResultStored(0))) == []
    *_, finish = driver.handle(AttemptEnded(1, 1, 0, result(0.4)), ResultStored(1))
    assert isinstance(finish, Finish) and finish.reason == "DeadlineExceeded"


def test_an_interrupted_trial_starts_again_without_losing_a_retry() -> None:
    driver = Driver(spec())
    propose(driver, driver.start()[0])
    driver.handle(AttemptStarted(0, 1))
    (relaunch,) = driver.handle(Interrupted(0))
    assert isinstance(relaunch, Relaunch) and relaunch.attempt == 1


def run_to_the_end(
    driver: Driver,
    search: Search,
    rng: random.Random,
    stop_after: int | None = None,
    running: list[int] | None = None,
    first: list[Command] | None = None,
) -> int:
    """An in-process executor finishing trials in random order; returns the results stored."""
    loop = InProcess(driver, search)
    loop.created.extend(running or [])
    loop.run(driver.start() if first is None else first, stop_after)
    while driver.finished is None and (stop_after is None or loop.stored < stop_after):
        at = rng.randrange(len(loop.created))
        index = loop.created[at]
        del loop.created[at]
        arch = driver.trial(index).architecture
        exit_code = 3 if rng.random() < 0.1 else 0
        loop.run(driver.handle(AttemptEnded(index, 1, exit_code, result(score(dict(arch))))), stop_after)
    return loop.stored


def test_a_driver_rebuilt_from_the_stored_history_finishes_like_an_unbroken_one() -> None:
    s = spec(strategy={"name": "evolution", "seed": 4}, budget={"maxTrials": 30, "parallelTrials": 4})
    unbroken = Driver(s, name_prefix="e")
    run_to_the_end(unbroken, Search(s), random.Random(1))
    assert unbroken.finished is not None and unbroken.counts.total == 30

    broken = Driver(s, name_prefix="e")
    search = Search(s)
    run_to_the_end(broken, search, random.Random(1), stop_after=12)
    history = broken.trials  # what the journal or the Trials hold at the crash
    rebuilt = Driver(s, history, name_prefix="e")
    # the same results and best; an ask the crash cut short is simply asked again
    assert rebuilt.told == broken.told and rebuilt.best == broken.best
    assert rebuilt.counts.total == len(history) <= broken.counts.total
    resumed = Search(s, history)
    assert resumed.strategy.state_digest() == search.strategy.state_digest()
    # a rebuilt pair goes on making decisions that replay exactly
    rng = random.Random(2)
    lost = [t.index for t in history if not t.told]
    first = rebuilt.handle(*(Interrupted(i) for i in lost))
    assert lost and [c.trial.index for c in of(Relaunch, first)] == lost
    run_to_the_end(rebuilt, resumed, rng, running=lost, first=[c for c in first if not isinstance(c, Relaunch)])
    assert rebuilt.finished is not None and rebuilt.counts.total == 30
    again = Search(s, rebuilt.trials)
    assert again.strategy.state_digest() == resumed.strategy.state_digest()


def test_counts_and_best_follow_every_event_without_a_pass_over_history() -> None:
    s = spec(budget={"maxTrials": 40, "parallelTrials": 5})
    driver = Driver(s)
    run_to_the_end(driver, Search(s), random.Random(3))
    from kubenas.core.engine import summarize

    counts, best = summarize(s, driver.trials)
    assert driver.counts == counts and driver.best == best

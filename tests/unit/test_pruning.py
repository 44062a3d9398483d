"""Stopping rules in the driver: curves kept in records, Optuna's pruners deciding, replay exact."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from pydantic import ValidationError

from kubenas.api.v1alpha1 import MAX_CURVE_POINTS, SearchExperimentSpec
from kubenas.core.codec import record_of, status_wire
from kubenas.core.driver import (
    AskFor,
    AttemptEnded,
    Candidate,
    Command,
    Create,
    Driver,
    Progress,
    Proposed,
    Prune,
    ResultStored,
    Store,
    Tell,
)
from tests.conftest import experiment_dict


def spec(early: dict[str, Any] | None, **overrides: Any) -> SearchExperimentSpec:
    doc = experiment_dict(**overrides)["spec"]
    if early is not None:
        doc["earlyStopping"] = early
    return SearchExperimentSpec.model_validate(doc)


def of(kind: type, commands: list[Command]) -> list[Any]:
    return [c for c in commands if isinstance(c, kind)]


def answer(ask: AskFor) -> Proposed:
    return Proposed(tuple(Candidate(i, {"x": i}) for i in range(ask.index, ask.index + ask.count)))


def start(driver: Driver) -> list[Command]:
    (ask,) = of(AskFor, driver.start())
    return driver.handle(answer(ask))


def finish(driver: Driver, index: int, value: float) -> list[Command]:
    commands = driver.handle(AttemptEnded(index, 1, 0, json.dumps({"val_accuracy": value})))
    return commands + driver.handle(ResultStored(index))


def test_a_curve_grows_bounded_and_is_stored_with_the_record() -> None:
    driver = Driver(spec(None))
    start(driver)
    driver.handle(Progress(0, 1, {"val_accuracy": 0.5}), Progress(0, 1, {"val_accuracy": 0.9}))
    driver.handle(Progress(0, 2, {"loss": 1.0}), Progress(0, 3, {"val_accuracy": float("nan")}))
    assert driver.trial(0).curve == ((1, 0.5),)  # a repeated step, another metric, NaN: not points
    for step in range(2, MAX_CURVE_POINTS + 10):
        assert driver.handle(Progress(0, step, {"val_accuracy": 0.5})) == []  # no rule: never pruned
    assert len(driver.trial(0).curve) == MAX_CURVE_POINTS
    (tell,) = of(Tell, finish(driver, 0, 0.7))
    assert tell.trial.phase == "Succeeded" and len(tell.trial.curve) == MAX_CURVE_POINTS
    wire = status_wire(tell.trial)
    assert wire["curve"][0] == {"step": 1, "value": 0.5}
    spec_doc = {"experiment": "t", "index": 0, "architecture": {"x": 0}, "architectureId": ""}
    assert record_of("t-00000", spec_doc, wire).curve == tell.trial.curve


def test_the_median_rule_prunes_a_trial_below_the_finished_ones_and_keeps_its_partial_result() -> None:
    s = spec({"rule": "median", "startupTrials": 2}, budget={"maxTrials": 6, "parallelTrials": 3})
    driver = Driver(s)
    start(driver)
    for index in (0, 1):
        for step in (1, 2, 3):
            assert driver.handle(Progress(index, step, {"val_accuracy": 0.5 + 0.1 * step})) == []
    assert driver.handle(Progress(2, 1, {"val_accuracy": 0.1})) == []  # no trial finished yet
    finish(driver, 0, 0.85)
    assert driver.handle(Progress(2, 2, {"val_accuracy": 0.2})) == []  # one finished, startupTrials=2
    finish(driver, 1, 0.8)
    commands = driver.handle(Progress(2, 3, {"val_accuracy": 0.3, "loss": 2.0}))
    prune, tell, store = commands[:3]
    assert isinstance(prune, Prune) and isinstance(tell, Tell) and isinstance(store, Store)
    rec = tell.trial
    assert (rec.phase, rec.reason, rec.reward, rec.metrics) == (
        "Pruned",
        "EarlyStopped",
        0.3,
        {"val_accuracy": 0.3, "loss": 2.0},
    )
    assert rec.curve == ((1, 0.1), (2, 0.2), (3, 0.3)) and rec.tell_sequence == 2
    assert rec.observation().usable  # told as a usable, low-fidelity result
    assert driver.counts.pruned == 1 and driver.active == 3  # counts as finished: a new trial is asked
    assert of(AskFor, commands) and driver.best is not None and driver.best.index == 0
    assert driver.handle(AttemptEnded(2, 1, -15)) == []  # the stopped process's exit changes nothing


@pytest.mark.parametrize(
    "early",
    [
        {"rule": "median", "startupTrials": 3, "warmupSteps": 1},
        {"rule": "asha", "minResource": 1, "reductionFactor": 2},
        {"rule": "hyperband", "minResource": 1, "maxResource": 9, "reductionFactor": 3},
    ],
)
def test_a_driver_rebuilt_from_the_stored_history_decides_every_point_as_the_live_one(early: dict[str, Any]) -> None:
    s = spec(early, budget={"maxTrials": 20, "parallelTrials": 4})
    live = Driver(s)
    rng = random.Random(7)
    quality: dict[int, float] = {}
    steps: dict[int, int] = {}
    running: list[int] = []
    commands = live.start()
    decisions = {"pruned": 0, "kept": 0}
    while live.finished is None:
        for command in commands:
            if isinstance(command, AskFor):
                commands += live.handle(answer(command))
            elif isinstance(command, Create):
                running.append(command.trial.index)
                quality[command.trial.index] = rng.random()
            elif isinstance(command, Store):
                commands += live.handle(ResultStored(command.trial.index))
        commands = []
        if live.finished is not None or not running:
            break
        index = rng.choice(running)
        step = steps[index] = steps.get(index, 0) + 1
        if step > 9:
            running.remove(index)
            commands = live.handle(AttemptEnded(index, 1, 0, json.dumps({"val_accuracy": quality[index]})))
            continue
        point = Progress(index, step, {"val_accuracy": quality[index] * (1 - 0.5**step) + 0.05 * rng.random()})
        rebuilt = Driver(s, live.trials)  # what a restarted executor builds from the stored records
        commands = live.handle(point)
        again = rebuilt.handle(point)
        assert of(Prune, again) == of(Prune, commands)
        if of(Prune, commands):
            running.remove(index)
            decisions["pruned"] += 1
        else:
            decisions["kept"] += 1
    assert decisions["pruned"] > 0 and decisions["kept"] > 0  # the scenario exercises both answers


def test_hyperband_needs_max_resource_and_min_resource_must_not_exceed_it() -> None:
    with pytest.raises(ValidationError, match="maxResource"):
        spec({"rule": "hyperband", "minResource": 1})
    with pytest.raises(ValidationError, match="minResource must not exceed"):
        spec({"rule": "asha", "minResource": 10, "maxResource": 5})
    with pytest.raises(ValidationError):
        spec({"rule": "patience"})

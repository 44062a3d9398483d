"""The controller's search service: ask, tell and replay, without HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.controller import protocol
from kubenas.controller.service import ControllerError, ControllerService
from kubenas.core.codec import status_wire, trial_wire
from kubenas.core.driver import AttemptEnded, Driver, Proposed, Tell
from kubenas.core.records import TrialRecord

SPEC: dict[str, Any] = {
    "searchSpace": {"cell": {"nodes": 4, "operations": ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"]}},
    "strategy": {"name": "evolution", "seed": 3, "evolution": {"populationSize": 4, "sampleSize": 2}},
    "objective": {"metric": "val_accuracy"},
    "budget": {"maxTrials": 40, "parallelTrials": 3},
    "trialTemplate": {"image": "t:1", "command": ["train"]},
}


def reward(arch: dict[str, Any]) -> float:
    return sum(len(str(v)) for v in arch.values()) / 100.0


def started(trials: list[dict[str, Any]] | None = None) -> ControllerService:
    service = ControllerService("exp")
    service.replay("exp", SPEC, trials or [])
    return service


def drive(service: ControllerService, steps: int) -> list[dict[str, Any]]:
    """Three trials in flight; each step tells the oldest and asks one more, as the operator's driver
    records them. Returns the history as the operator stores it (Trial spec and status)."""
    driver = Driver(SearchExperimentSpec.model_validate(SPEC), name_prefix="exp")
    records: dict[int, TrialRecord] = {}

    def ask(index: int, count: int) -> None:
        candidates = [protocol.candidate_from_json(c) for c in service.ask(index, count)]
        driver.asked = index + count
        driver.handle(Proposed(tuple(candidates)))
        records.update({c.index: driver.trial(c.index) for c in candidates})

    ask(0, 3)
    for _ in range(steps):
        oldest = min(i for i, r in records.items() if not r.told)
        arch = records[oldest].architecture
        for command in driver.handle(AttemptEnded(oldest, 1, 0, json.dumps({"val_accuracy": reward(arch)}))):
            if isinstance(command, Tell):
                assert service.tell(oldest, status_wire(command.trial))
                records[oldest] = command.trial
        ask(len(records), 1)
    return [trial_wire(records[i], "exp") for i in sorted(records)]


def test_a_fresh_controller_is_unconfigured_until_replayed() -> None:
    service = ControllerService()
    assert not service.state().configured
    with pytest.raises(ControllerError) as err:
        service.ask(0, 1)
    assert err.value.code == protocol.NOT_CONFIGURED
    state = service.replay("exp", SPEC, [])
    assert (state.configured, state.asked, state.told) == (True, 0, 0)


def test_ask_is_idempotent_by_index() -> None:
    service = started()
    first = service.ask(0, 3)
    assert [t["index"] for t in first] == [0, 1, 2]
    assert all(t["architectureId"] for t in first)
    assert service.ask(1, 2) == first[1:]  # asked again after a crash: the same candidates
    assert service.state().asked == 3
    assert service.ask(2, 2)[1]["index"] == 3
    with pytest.raises(ControllerError) as err:
        service.ask(9, 1)
    assert err.value.code == protocol.OUT_OF_SYNC


def test_tell_is_idempotent_by_index() -> None:
    service = started()
    service.ask(0, 3)
    assert service.tell(1, {"phase": "Succeeded", "reward": 0.7, "metrics": {"val_accuracy": 0.7}})
    digest = service._search().strategy.state_digest()
    assert not service.tell(1, {"phase": "Succeeded", "reward": 0.1})
    assert service._search().strategy.state_digest() == digest
    assert service.state().told == 1
    assert service.tell(0, {"phase": "Failed", "reason": "BadCandidate"})
    assert service.state().told == 2


def test_tell_for_an_unasked_index_is_out_of_sync_and_a_bad_result_is_refused() -> None:
    service = started()
    service.ask(0, 1)
    with pytest.raises(ControllerError) as err:
        service.tell(4, {"phase": "Succeeded", "reward": 1.0})
    assert err.value.code == protocol.OUT_OF_SYNC
    with pytest.raises(ControllerError) as err:
        service.tell(0, {"phase": "Sideways"})
    assert err.value.code == protocol.BAD_REQUEST


def test_a_replayed_controller_continues_exactly_like_an_unbroken_one() -> None:
    unbroken = started()
    history = drive(unbroken, 12)
    restarted = started(history)
    assert restarted.state().asked == unbroken.state().asked
    assert restarted.state().told == unbroken.state().told
    n = len(history)
    assert restarted.ask(n, 5) == unbroken.ask(n, 5)
    # and it keeps agreeing as results keep arriving
    result = {"phase": "Succeeded", "reward": 0.99, "metrics": {"val_accuracy": 0.99}}
    assert unbroken.tell(n, result) and restarted.tell(n, result)
    assert restarted.ask(n + 5, 3) == unbroken.ask(n + 5, 3)


def test_a_history_from_another_strategy_does_not_replay() -> None:
    history = drive(started(), 4)
    other_seed = {**SPEC, "strategy": {**SPEC["strategy"], "seed": 4}}
    with pytest.raises(ControllerError) as err:
        ControllerService().replay("exp", other_seed, history)
    assert err.value.code == protocol.REPLAY_MISMATCH


def test_a_history_with_a_gap_does_not_replay() -> None:
    history = drive(started(), 4)
    with pytest.raises(ControllerError) as err:
        ControllerService().replay("exp", SPEC, history[:2] + history[3:])
    assert err.value.code == protocol.REPLAY_MISMATCH


def test_an_invalid_spec_is_a_bad_request() -> None:
    with pytest.raises(ControllerError) as err:
        ControllerService().replay("exp", {"searchSpace": {}}, [])
    assert err.value.code == protocol.BAD_REQUEST

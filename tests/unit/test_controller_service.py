"""The controller's search service: ask, tell and replay, without HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from kubenas.controller import protocol
from kubenas.controller.service import ControllerError, ControllerService

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
    """Three trials in flight; each step tells the oldest and asks one more. Returns the history."""
    asked = service.ask(0, 3)
    for _ in range(steps):
        oldest = next(t for t in asked if t["tellSequence"] is None)
        told = service.tell(
            oldest["index"], oldest["name"], {"val_accuracy": reward(oldest["architecture"])}, False, None
        )
        asked[oldest["index"]] = told
        asked += service.ask(len(asked), 1)
    return asked


def test_a_fresh_controller_is_unconfigured_until_replayed() -> None:
    service = ControllerService()
    assert not service.state().configured
    with pytest.raises(ControllerError) as err:
        service.ask(0, 1)
    assert err.value.code == protocol.NOT_CONFIGURED
    state = service.replay("exp", SPEC, [])
    assert (state.configured, state.asked, state.told) == (True, 0, 0)


def test_ask_names_candidates_like_the_trials_and_is_idempotent_by_index() -> None:
    service = started()
    first = service.ask(0, 3)
    assert [t["name"] for t in first] == ["exp-00000", "exp-00001", "exp-00002"]
    assert all(t["architectureId"] for t in first)
    assert service.ask(1, 2) == first[1:]  # asked again after a crash: the same candidates
    assert service.state().asked == 3
    assert service.ask(2, 2)[1]["index"] == 3
    with pytest.raises(ControllerError) as err:
        service.ask(9, 1)
    assert err.value.code == protocol.OUT_OF_SYNC


def test_tell_records_its_position_and_is_idempotent_by_trial() -> None:
    service = started()
    service.ask(0, 3)
    told = service.tell(1, "exp-00001", {"val_accuracy": 0.7}, False, None)
    assert (told["phase"], told["reward"], told["tellSequence"], told["asksBeforeTell"]) == ("Succeeded", 0.7, 0, 3)
    again = service.tell(1, "exp-00001", {"val_accuracy": 0.1}, False, None)
    assert again == told
    assert service.state().told == 1
    failed = service.tell(0, "exp-00000", None, True, "BadCandidate")
    assert (failed["phase"], failed["reason"], failed["tellSequence"]) == ("Failed", "BadCandidate", 1)


def test_tell_for_another_trial_name_or_an_unasked_index_is_out_of_sync() -> None:
    service = started()
    service.ask(0, 1)
    for index, name in ((0, "other-00000"), (4, "exp-00004")):
        with pytest.raises(ControllerError) as err:
            service.tell(index, name, {"val_accuracy": 1.0}, False, None)
        assert err.value.code == protocol.OUT_OF_SYNC


def test_a_replayed_controller_continues_exactly_like_an_unbroken_one() -> None:
    unbroken = started()
    history = drive(unbroken, 12)
    restarted = started(history)
    assert restarted.state().asked == unbroken.state().asked
    assert restarted.state().told == unbroken.state().told
    n = len(history)
    assert restarted.ask(n, 5) == unbroken.ask(n, 5)
    # and it keeps agreeing as results keep arriving
    told_a = unbroken.tell(n, f"exp-{n:05d}", {"val_accuracy": 0.99}, False, None)
    told_b = restarted.tell(n, f"exp-{n:05d}", {"val_accuracy": 0.99}, False, None)
    assert told_a == told_b
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

"""One-shot search: the API's rules, and the phases the core decides from what is recorded."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.driver import AskFor, AttemptEnded, AttemptStarted, Create, Driver, ResultStored, Store, Tell, Tick
from kubenas.core.oneshot import (
    Evaluate,
    OneShotFailed,
    Retrain,
    SupernetRecord,
    TrainSupernet,
    evaluation_spec,
    next_phase,
    phase_name,
    supernet_outcome,
)
from kubenas.core.records import TrialRecord
from kubenas.core.search import Search
from kubenas.core.strategies import make_strategy
from tests.conftest import experiment_dict

ONE_SHOT = {"evaluations": 12, "topK": 2, "supernetSettings": {"epochs": 30}}


def spec_of(**overrides: Any) -> SearchExperimentSpec:
    doc = experiment_dict(
        strategy={"name": "evolution", "seed": 3, "evolution": {"populationSize": 4, "sampleSize": 2}},
        oneShot=ONE_SHOT,
        budget={"maxTrials": 2, "parallelTrials": 2},
    )
    doc["spec"]["trialTemplate"]["settings"] = {"epochs": 5, "width": 8}
    doc["spec"]["objective"]["target"] = 0.99
    doc["spec"].update(overrides)
    return SearchExperimentSpec.model_validate(doc["spec"])


def score(arch: dict[str, Any]) -> float:
    """A fixed landscape: conv edges help, skip a little, none not at all."""
    return sum({"nor_conv_3x3": 0.3, "skip_connect": 0.1}.get(str(v), 0.0) for v in arch.values())


def run_evaluations(
    spec: SearchExperimentSpec, history: list[TrialRecord], stop_after: int | None = None
) -> list[TrialRecord]:
    """Phase 2 carried out in process (the local adapter's loop, with a score table for the evaluator)."""
    search = Search(spec, history)
    driver = Driver(spec, history, name_prefix="e-eval")
    pending = list(driver.handle(Tick(0.0)))
    stored = 0
    while pending and (stop_after is None or stored < stop_after):
        command = pending.pop(0)
        if isinstance(command, (AskFor, Tell)):
            answer = search.serve(command)
            pending += driver.handle(answer) if answer is not None else []
        elif isinstance(command, Create):
            result = json.dumps({"val_accuracy": score(command.trial.architecture)})
            i = command.trial.index
            pending += driver.handle(AttemptStarted(i, 1), AttemptEnded(i, 1, 0, result))
        elif isinstance(command, Store):
            stored += 1
            pending += driver.handle(ResultStored(command.trial.index))
    return [t for t in driver.trials if t.told]


def test_the_phases_follow_the_record() -> None:
    spec = spec_of()
    first = next_phase(spec, SupernetRecord(), [])
    assert isinstance(first, TrainSupernet) and first.attempt == 1
    assert first.settings == {"epochs": 30, "width": 8}  # supernetSettings over the trial settings
    assert phase_name(first) == "Supernet"
    assert next_phase(spec, SupernetRecord(), []) == first  # the same record gives the same decision

    done = SupernetRecord(attempts=1, succeeded=True, metrics={"val_accuracy": 0.5})
    search = next_phase(spec, done, [])
    assert isinstance(search, Evaluate) and phase_name(search) == "Search"
    assert search.spec.budget.max_trials == 12 and search.spec.budget.parallel_trials == 1
    assert search.spec.one_shot is None and search.spec.objective.target is None
    assert search.spec.strategy == spec.strategy

    evaluations = run_evaluations(search.spec, [])
    assert len(evaluations) == 12
    assert isinstance(next_phase(spec, done, evaluations[:11]), Evaluate)
    retrain = next_phase(spec, done, evaluations)
    assert isinstance(retrain, Retrain) and phase_name(retrain) == "Retrain"
    chosen = retrain.spec.strategy.retrain
    assert retrain.spec.strategy.name == "retrain" and chosen is not None
    ranked = sorted(evaluations, key=lambda e: (-(e.reward or 0.0), e.index))
    assert [c.architecture for c in chosen.architectures] == [ranked[0].architecture, ranked[1].architecture]
    assert [c.trial for c in chosen.architectures] == [ranked[0].name, ranked[1].name]
    assert retrain.spec.budget.max_trials == 2 and retrain.spec.one_shot is None
    # the retrain's strategy proposes exactly those, in order
    strategy = make_strategy(retrain.spec.strategy, Search(retrain.spec).space)
    assert [strategy.ask() for _ in range(2)] == [ranked[0].architecture, ranked[1].architecture]


def test_a_supernet_attempt_is_judged_by_the_trial_rule() -> None:
    spec = spec_of()
    killed = supernet_outcome(SupernetRecord(), 1, 137, None, retries=1)
    assert not killed.succeeded and not killed.failed and killed.reason == "Killed"
    again = next_phase(spec, killed, [])
    assert isinstance(again, TrainSupernet) and again.attempt == 2
    gone = supernet_outcome(killed, 2, 137, None, retries=1)
    failed = next_phase(spec, gone, [])
    assert isinstance(failed, OneShotFailed) and failed.reason == "SupernetFailed"
    refused = supernet_outcome(SupernetRecord(), 1, 3, '{"status": "bad_candidate", "message": "no cell"}', retries=2)
    assert refused.failed and "no cell" in (refused.message or "")
    ok = supernet_outcome(SupernetRecord(), 1, 0, '{"val_accuracy": 0.4, "status": "completed"}', retries=0)
    assert ok.succeeded and ok.metrics == {"val_accuracy": 0.4}


def test_nothing_to_retrain_fails_the_search() -> None:
    spec = spec_of()
    done = SupernetRecord(attempts=1, succeeded=True)
    failed = [
        TrialRecord(
            index=i,
            architecture={},
            name=f"e-{i}",
            phase="Failed",
            tell_sequence=i,
            reason="MissingMetric",
            message="the trial reported no 'latency_ms' metric",
        )
        for i in range(12)
    ]
    phase = next_phase(spec, done, failed)
    assert isinstance(phase, OneShotFailed) and phase.reason == "NothingToRetrain"
    # the message says why, not only that nothing is left: the first failure's reason
    assert "12 evaluations, none usable; e-0: MissingMetric: the trial reported no 'latency_ms'" in phase.message


def test_an_interrupted_search_phase_replays_to_the_same_evaluations() -> None:
    spec = evaluation_spec(spec_of())
    whole = run_evaluations(spec, [])
    for cut in (1, 5, 9):
        first = run_evaluations(spec, [], stop_after=cut)
        assert len(first) == cut
        resumed = run_evaluations(spec, first)
        assert [(t.architecture, t.reward) for t in resumed] == [(t.architecture, t.reward) for t in whole]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"oneShot": {"evaluations": 2, "topK": 3}}, "spec.oneShot.topK"),
        ({"strategy": {"name": "retrain", "retrain": {"architectures": [{"architecture": {}}]}}}, "spec.oneShot"),
        ({"budget": {"maxTrials": 1}}, "spec.budget.maxTrials"),
        ({"earlyStopping": {"rule": "median"}}, "spec.earlyStopping"),
        (
            {
                "searchSpace": {
                    "cell": {"nodes": 3},
                    "hyperparameters": [{"name": "lr", "type": "int", "low": 1, "high": 2}],
                }
            },
            "spec.searchSpace",
        ),
        ({"oneShot": {"sampling": "darts"}}, "spec.oneShot.sampling"),
        ({"oneShot": {"enas": {"pathsPerBatch": 4}}}, "spec.oneShot.enas"),
    ],
)
def test_a_one_shot_spec_is_refused_with_the_field_at_fault(change: dict[str, Any], field: str) -> None:
    from kubenas.load import ManifestError, parse_experiment

    doc = experiment_dict(oneShot=ONE_SHOT, budget={"maxTrials": 2})
    doc["spec"].update(change)
    with pytest.raises((ManifestError, ValidationError)) as info:
        parse_experiment(doc)
    assert field in str(info.value)

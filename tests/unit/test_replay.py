"""Every strategy, driven through ``Search`` and the driver, is rebuilt exactly from its history.

The live run interleaves asks ahead of rewards (parallel trials), tells out of ask order, failures
and infeasible results; the rebuilt search must reach the same state and make the same next asks.
"""

from __future__ import annotations

import json
import random

import pytest

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.driver import AttemptEnded, Driver, Proposed, Tell
from kubenas.core.errors import ReplayError
from kubenas.core.records import TrialRecord
from kubenas.core.search import Search
from kubenas.core.strategies import REGISTRY
from kubenas.local.toy_trial import score
from tests.conftest import experiment_dict

#: gp's replay is covered by test_gp.py (each of its asks costs about a second of CPU), retrain's
#: by test_retrain.py (it needs the list of architectures it retrains)
STRATEGIES = sorted(name for name in REGISTRY if name not in ("gp", "retrain"))

SPACES = {
    "cell": {"cell": {"nodes": 4}},
    "mixed": {
        "layers": {"layers": 2, "operations": ["conv3x3", "identity", "max_pool3x3"]},
        "hyperparameters": [
            {"name": "lr", "type": "float", "low": 0.001, "high": 0.5, "log": True},
            {"name": "width", "type": "int", "low": 8, "high": 64, "step": 8},
        ],
    },
}


def make_spec(strategy: str, space: str, seed: int = 5) -> SearchExperimentSpec:
    doc = experiment_dict(
        searchSpace=SPACES[space],
        strategy={"name": strategy, "seed": seed},
        budget={"maxTrials": 40, "parallelTrials": 4},
    )
    return SearchExperimentSpec.model_validate(doc["spec"])


def drive(search: Search, steps: int, order_seed: int = 0, in_order: bool = False) -> list[TrialRecord]:
    """Asks ahead of rewards, tells in a shuffled order (``in_order``: in ask order), some failures;
    returns the history."""
    rng = random.Random(order_seed)
    driver = Driver(make_spec_like(search), [])
    records: dict[int, TrialRecord] = {}
    pending: list[int] = []
    asked = search.asked
    for _ in range(steps):
        while len(pending) < 4:
            (candidate,) = search.ask(asked, 1)
            asked += 1
            driver.handle(Proposed((candidate,)))
            pending.append(candidate.index)
        i = pending.pop(0 if in_order else rng.randrange(len(pending)))
        arch = search.architectures[i]
        if rng.random() < 0.1:
            commands = driver.handle(AttemptEnded(i, 1, 3))  # a bad candidate: failed, never retried
        else:
            commands = driver.handle(AttemptEnded(i, 1, 0, json.dumps({"val_accuracy": score(dict(arch))})))
        for command in commands:
            if isinstance(command, Tell):
                search.tell(i, command.trial.observation())
                records[i] = command.trial
    driver_trials = {t.index: t for t in driver.trials}
    return [records.get(i, driver_trials[i]) for i in sorted(driver_trials)]


def make_spec_like(search: Search) -> SearchExperimentSpec:
    """The same experiment with enough budget that the driver never stops asking, and no retries."""
    return search.spec.model_copy(update={"budget": search.spec.budget.model_copy(update={"max_trials": 10_000})})


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_replayed_search_equals_the_live_one(strategy: str, space: str) -> None:
    spec = make_spec(strategy, space)
    live = Search(spec)
    history = drive(live, 24)
    rebuilt = Search(spec, history)
    assert rebuilt.strategy.state_digest() == live.strategy.state_digest()
    assert rebuilt.asked == live.asked
    assert rebuilt.ask(live.asked, 3) == live.ask(live.asked, 3)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_record_of_the_told_candidates_alone_rebuilds_the_search(strategy: str) -> None:
    """A one-shot search's light record keeps only the told evaluations; with four asked at a time the
    last ones were told after candidates the record does not hold had been asked. The rebuilt search
    asks those again, and gives them back as the live one does."""
    spec = make_spec(strategy, "cell")
    live = Search(spec)
    history = drive(live, 20, in_order=True)
    told = [t for t in history if t.told]
    assert [t.index for t in told] == list(range(len(told))) and len(told) < live.asked
    assert max(t.asks_before_tell or 0 for t in told) > len(told)  # asks the record does not hold
    rebuilt = Search(spec, told)
    assert rebuilt.strategy.state_digest() == live.strategy.state_digest()
    assert rebuilt.asked == live.asked
    assert rebuilt.ask(len(told), live.asked - len(told) + 3) == live.ask(len(told), live.asked - len(told) + 3)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_decisions_and_no_repeats(strategy: str) -> None:
    a, b = Search(make_spec(strategy, "cell")), Search(make_spec(strategy, "cell"))
    drive(a, 30)
    drive(b, 30)
    assert a.architectures == b.architectures
    ids = [a.space.canonical(arch) for arch in a.architectures]
    assert len(set(ids)) == len(ids), "an architecture was proposed twice on a large finite space"


def test_a_history_from_another_seed_is_refused() -> None:
    live = Search(make_spec("random", "cell", seed=1))
    history = drive(live, 5)
    with pytest.raises(ReplayError):
        Search(make_spec("random", "cell", seed=2), history)

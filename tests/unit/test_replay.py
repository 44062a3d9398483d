"""Every strategy, driven through ``Search``, is rebuilt exactly from its history.

The live run interleaves asks ahead of rewards (parallel trials), tells out of ask order, failures
and infeasible results; the rebuilt search must reach the same state and make the same next asks.
"""

from __future__ import annotations

import random

import pytest

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.errors import ReplayError
from kubenas.core.search import Search
from kubenas.core.strategies import REGISTRY
from kubenas.local.toy_trial import score
from tests.conftest import experiment_dict

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


def drive(search: Search, steps: int, order_seed: int = 0) -> None:
    """Asks ahead of rewards, tells in a shuffled order, some failures."""
    rng = random.Random(order_seed)
    pending: list[int] = []
    for _ in range(steps):
        while len(pending) < 4:
            pending.append(search.ask().index)
        i = pending.pop(rng.randrange(len(pending)))
        arch = search.trials[i].architecture
        if rng.random() < 0.1:
            search.tell(i, None, failed=True, reason="Killed")
        else:
            search.tell(i, {"val_accuracy": score(dict(arch))})


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize("strategy", sorted(REGISTRY))
def test_replayed_search_equals_the_live_one(strategy: str, space: str) -> None:
    spec = make_spec(strategy, space)
    live = Search(spec)
    drive(live, 24)
    rebuilt = Search(spec, live.trials)
    assert rebuilt.strategy.state_digest() == live.strategy.state_digest()
    for _ in range(3):
        assert rebuilt.ask().architecture == live.ask().architecture


@pytest.mark.parametrize("strategy", sorted(REGISTRY))
def test_same_seed_same_decisions_and_no_repeats(strategy: str) -> None:
    a, b = Search(make_spec(strategy, "cell")), Search(make_spec(strategy, "cell"))
    drive(a, 30)
    drive(b, 30)
    assert [t.architecture for t in a.trials] == [t.architecture for t in b.trials]
    ids = [a.space.canonical(t.architecture) for t in a.trials]
    assert len(set(ids)) == len(ids), "an architecture was proposed twice on a large finite space"


def test_a_history_from_another_seed_is_refused() -> None:
    live = Search(make_spec("random", "cell", seed=1))
    drive(live, 5)
    with pytest.raises(ReplayError):
        Search(make_spec("random", "cell", seed=2), live.trials)

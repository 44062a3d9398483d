"""The ``gp`` strategy (Optuna's GPSampler under the shared ledger), on short runs.

Each GP ask fits a model and optimises its acquisition function (about a second of CPU), so the
generic strategy tests run it on a few asks here rather than on the long patterns every cheap
strategy goes through in ``test_strategies.py``; the checks are the same contract: exact replay
with asks ahead of rewards, the same decisions for the same seed, no repeats on a finite space,
failures tolerated, and the module loads neither torch nor Optuna until a GP strategy is built.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from kubenas.api.strategy import StrategySpec
from kubenas.core.history import replay
from kubenas.core.space import Categorical, SearchSpace
from kubenas.core.strategies import Strategy, make_strategy
from kubenas.core.strategies.base import Observation
from tests.unit.test_strategies import CELL, MIXED, TINY, live_run, reward, sequential

pytest.importorskip("torch")
pytest.importorskip("scipy")

#: a short parallel interleaving: asks 0..2 ahead, tells out of ask order, each followed by an ask
PATTERN: list[tuple[str, int]] = [("ask", i) for i in range(3)]
for k, i in enumerate([1, 0, 2, 4, 3, 5, 7, 6, 8]):
    PATTERN += [("tell", i), ("ask", k + 3)]


def make(space: SearchSpace, seed: int = 3) -> Strategy:
    return make_strategy(StrategySpec(name="gp", seed=seed, gp={"startupTrials": 3}), space)


@pytest.mark.parametrize("space", [CELL, MIXED], ids=["cell", "mixed"])
def test_replay_with_parallel_asks_rebuilds_the_study_and_the_next_asks(space: SearchSpace) -> None:
    live = make(space)
    history = live_run(live, PATTERN)
    assert sum(1 for t in live.study.trials if t.state.name == "COMPLETE") > 3, "the model was used"  # type: ignore[attr-defined]
    rebuilt = make(space)
    replay(rebuilt, history)
    assert rebuilt.state_digest() == live.state_digest()
    for i in range(live.asked, live.asked + 2):
        arch = live.ask()
        assert rebuilt.ask() == arch
        for s in (live, rebuilt):
            s.tell(i, arch, Observation(reward=reward(space, arch)))
    assert rebuilt.state_digest() == live.state_digest()


def test_same_seed_same_decisions_other_seed_other_decisions() -> None:
    runs = [[t.architecture for t in live_run(make(CELL, seed), PATTERN)] for seed in (1, 1, 2)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_no_architecture_is_proposed_twice_until_the_space_is_exhausted() -> None:
    s = make(TINY)
    archs = sequential(s, TINY.size or 0, lambda a: reward(TINY, a))
    assert len({TINY.canonical(a) for a in archs}) == TINY.size
    assert TINY.canonical(s.ask()) in {TINY.canonical(a) for a in archs}


def test_a_sampler_repeat_becomes_a_fresh_architecture() -> None:
    # One decision of 12 choices, reward by index: the GP's maximum of expected improvement keeps
    # landing on the observed best, which the ledger must turn into unseen architectures.
    space = SearchSpace((Categorical("x", tuple(range(12))),))
    s = make(space)
    archs = sequential(s, 10, lambda a: -abs(a["x"] - 5))
    assert len({a["x"] for a in archs}) == 10


def test_failures_are_tolerated_and_never_the_incumbent() -> None:
    s = make(CELL)
    for i in range(10):
        arch = s.ask()
        if i % 3 == 1:
            s.tell(i, arch, Observation(reward=None, failed=True))
        elif i % 3 == 2:
            s.tell(i, arch, Observation(reward=100.0 + i, feasible=False))
        else:
            s.tell(i, arch, Observation(reward=float(i)))
    assert CELL.validate(s.ask())
    best = s.ledger.best  # type: ignore[attr-defined]
    assert best is not None and best.usable and best.reward == 9.0


def test_building_the_registry_and_the_spec_loads_neither_torch_nor_optuna() -> None:
    code = (
        "import sys, kubenas.core.strategies as s\n"
        "from kubenas.api.strategy import StrategySpec\n"
        "s.strategy_class('gp'); StrategySpec(name='gp', gp={'startupTrials': 5})\n"
        "print('torch' in sys.modules, 'optuna' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_gp_is_fitted_on_at_most_max_points_trials() -> None:
    s = make_strategy(StrategySpec(name="gp", seed=1, gp={"startupTrials": 3, "maxPoints": 10}), CELL)
    for i in range(14):
        arch = s.ask()
        s.tell(i, arch, Observation(reward=reward(CELL, arch)))
    completed = sum(1 for t in s.study.trials if t.state.name == "COMPLETE")  # type: ignore[attr-defined]
    s.ask()
    fitted = s.study.sampler._gprs_cache_list[0]._X_train  # type: ignore[attr-defined]
    assert completed >= 14 and fitted.shape[0] == 10

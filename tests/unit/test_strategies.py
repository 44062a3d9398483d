"""Each strategy through the bare ask/tell interface: determinism, exact replay, no repeats, failures.

The live runs interleave asks and tells the way parallel trials do (asks ahead of rewards, tells out
of ask order, failed and infeasible results), and record that interleaving as trial records; a
fresh strategy replayed from the records must reach the same state and make the same next asks.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest

from kubenas.api.strategy import STRATEGY_NAMES, StrategySpec
from kubenas.core.history import replay
from kubenas.core.records import TrialRecord
from kubenas.core.space import Categorical, FloatRange, IntRange, SearchSpace
from kubenas.core.strategies import REGISTRY, Strategy, make_strategy
from kubenas.core.strategies.base import Observation

CELL = SearchSpace(tuple(Categorical(f"edge_{i}", ("none", "skip", "conv1x1", "conv3x3", "pool")) for i in range(6)))
MIXED = SearchSpace(
    (
        Categorical("op", ("a", "b", "c")),
        IntRange("width", 8, 64, 8),
        FloatRange("lr", 0.001, 0.5, log=True),
        Categorical("act", ("relu", "gelu")),
    )
)
TINY = SearchSpace((Categorical("a", ("x", "y", "z")), Categorical("b", (1, 2))))
#: strategies cheap enough for the long patterns below; ``gp`` (a model fit per ask) has test_gp.py;
#: ``retrain`` proposes a given list and does not search: test_retrain.py
CHEAP = tuple(n for n in STRATEGY_NAMES if n not in ("gp", "retrain"))


def reward(space: SearchSpace, arch: dict) -> float:
    """A smooth deterministic score with one best architecture (the last choice everywhere)."""
    total = 0.0
    for d in space.decisions:
        if isinstance(d, FloatRange):
            total += 1.0 - abs(d.to_unit(arch[d.name]) - 0.7)
        else:
            total += d.index(arch[d.name]) / max(1, d.cardinality - 1)
    return total


def make(name: str, space: SearchSpace, seed: int = 3) -> Strategy:
    return make_strategy(StrategySpec(name=name, seed=seed), space)


#: the interleaving of a parallel run: asks 0..3 ahead, then tells out of order, each followed by an ask
PATTERN: list[tuple[str, int]] = [("ask", i) for i in range(4)]
for k, i in enumerate([1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14, 17, 16, 19, 18, 21, 20, 23, 22]):
    PATTERN += [("tell", i), ("ask", k + 4)]


def observe(space: SearchSpace, index: int, arch: dict) -> Observation:
    if index % 7 == 5:
        return Observation(reward=None, failed=True)
    if index % 11 == 9:
        return Observation(reward=reward(space, arch), feasible=False)
    return Observation(reward=reward(space, arch))


def live_run(
    strategy: Strategy, pattern: list[tuple[str, int]] = PATTERN, records: dict[int, TrialRecord] | None = None
) -> list[TrialRecord]:
    """Drive ``strategy`` through ``pattern``; return the history as the engine would record it.

    ``records`` continues an earlier history (after a replay) instead of starting a new one.
    """
    records = dict(records or {})
    tells = sum(1 for t in records.values() if t.told)
    for op, i in pattern:
        if op == "ask":
            records[i] = TrialRecord(index=i, architecture=strategy.ask())
            continue
        arch = records[i].architecture
        obs = observe(strategy.space, i, arch)
        phase = "Failed" if obs.failed else "Infeasible" if not obs.feasible else "Succeeded"
        records[i] = records[i].with_(
            phase=phase, reward=obs.reward, tell_sequence=tells, asks_before_tell=strategy.asked
        )
        strategy.tell(i, dict(arch), obs)
        tells += 1
    return [records[i] for i in sorted(records)]


def sequential(strategy: Strategy, n: int, score: Callable[[dict], float]) -> list[dict]:
    out = []
    for i in range(n):
        arch = strategy.ask()
        strategy.tell(i, arch, Observation(reward=score(arch)))
        out.append(arch)
    return out


def test_every_strategy_name_is_registered() -> None:
    assert set(REGISTRY) == set(STRATEGY_NAMES)


@pytest.mark.parametrize("space", [CELL, MIXED], ids=["cell", "mixed"])
@pytest.mark.parametrize("name", CHEAP)
def test_same_seed_same_decisions(name: str, space: SearchSpace) -> None:
    a, b = make(name, space), make(name, space)
    history_a, history_b = live_run(a), live_run(b)
    assert [t.architecture for t in history_a] == [t.architecture for t in history_b]
    assert a.state_digest() == b.state_digest()
    assert a.ask() == b.ask()


@pytest.mark.parametrize("name", CHEAP)
def test_another_seed_other_decisions(name: str) -> None:
    a, b = make(name, CELL, seed=1), make(name, CELL, seed=2)
    assert [t.architecture for t in live_run(a)] != [t.architecture for t in live_run(b)]


@pytest.mark.parametrize("space", [CELL, MIXED], ids=["cell", "mixed"])
@pytest.mark.parametrize("name", CHEAP)
def test_replay_with_parallel_asks_rebuilds_the_state(name: str, space: SearchSpace) -> None:
    live = make(name, space)
    history = live_run(live)
    assert any(t.asks_before_tell and t.asks_before_tell > t.index + 1 for t in history), "asks ran ahead"
    rebuilt = make(name, space)
    replay(rebuilt, history)
    assert (rebuilt.asked, rebuilt.told) == (live.asked, live.told)
    assert rebuilt.state_digest() == live.state_digest()
    for i in range(live.asked, live.asked + 3):
        arch = live.ask()
        assert rebuilt.ask() == arch
        for s in (live, rebuilt):
            s.tell(i, arch, Observation(reward=reward(space, arch)))
    assert rebuilt.state_digest() == live.state_digest()


@pytest.mark.parametrize("name", CHEAP)
def test_a_replayed_strategy_continues_like_the_unbroken_run(name: str) -> None:
    unbroken = make(name, CELL)
    full = live_run(unbroken)
    cut = PATTERN.index(("tell", 9))
    history = live_run(make(name, CELL), PATTERN[:cut])
    resumed = make(name, CELL)
    replay(resumed, history)
    continued = live_run(resumed, PATTERN[cut:], {t.index: t for t in history})
    assert [t.architecture for t in continued] == [t.architecture for t in full]
    assert resumed.state_digest() == unbroken.state_digest()


@pytest.mark.parametrize("name", CHEAP)
def test_no_architecture_is_proposed_twice_until_the_space_is_exhausted(name: str) -> None:
    s = make(name, TINY)
    archs = sequential(s, TINY.size or 0, lambda a: reward(TINY, a))
    assert len({TINY.canonical(a) for a in archs}) == TINY.size
    extra = s.ask()  # an exhausted space may repeat, but must still answer
    assert TINY.canonical(extra) in {TINY.canonical(a) for a in archs}


@pytest.mark.parametrize("name", CHEAP)
def test_stepped_ranges_are_proposed_on_their_grid_without_repeats(name: str) -> None:
    space = SearchSpace((FloatRange("p", 0.1, 0.9, step=0.1), IntRange("n", 2, 6, 2)))
    s = make(name, space)
    archs = sequential(s, space.size or 0, lambda a: float(a["p"]) * a["n"])
    assert {a["p"] for a in archs} == set(space["p"].values())
    assert len({space.canonical(a) for a in archs}) == space.size


@pytest.mark.parametrize("name", CHEAP)
def test_no_repeats_on_a_large_space_with_parallel_asks(name: str) -> None:
    s = make(name, CELL)
    history = live_run(s)
    ids = [CELL.canonical(t.architecture) for t in history]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("name", CHEAP)
def test_failures_are_tolerated_and_never_the_incumbent(name: str) -> None:
    s = make(name, CELL)
    for i in range(40):
        arch = s.ask()
        if i % 2:
            s.tell(i, arch, Observation(reward=None, failed=True))
        elif i % 4 == 0:
            s.tell(i, arch, Observation(reward=100.0 + i, feasible=False))
        else:
            s.tell(i, arch, Observation(reward=float(i)))
    assert CELL.validate(s.ask())
    best = s.ledger.best  # type: ignore[attr-defined]
    assert best is not None and best.usable and best.reward == 38.0


@pytest.mark.parametrize("name", CHEAP)
def test_a_run_of_only_failures_keeps_proposing(name: str) -> None:
    s = make(name, MIXED)
    for i in range(15):
        s.tell(i, s.ask(), Observation(reward=None, failed=True))
    assert MIXED.validate(s.ask())


def test_evolution_population_holds_only_usable_results_and_ages() -> None:
    s = make_strategy(StrategySpec(name="evolution", seed=0, evolution={"populationSize": 5, "sampleSize": 2}), CELL)
    for i in range(30):
        arch = s.ask()
        s.tell(i, arch, Observation(reward=None, failed=True) if i % 3 == 0 else Observation(reward=float(i)))
    members = [r.index for r in s.population]  # type: ignore[attr-defined]
    assert members == [23, 25, 26, 28, 29]  # the five youngest; 27 and 24 failed


def test_grid_visits_every_point_once_floats_on_float_steps() -> None:
    space = SearchSpace((Categorical("a", ("x", "y")), FloatRange("lr", 0.0, 1.0), IntRange("n", 1, 3)))
    s = make_strategy(StrategySpec(name="grid", seed=4, grid={"floatSteps": 3}), space)
    archs = [s.ask() for _ in range(18)]
    assert len({space.canonical(a) for a in archs}) == 18
    assert {a["lr"] for a in archs} == {0.0, 0.5, 1.0}
    assert s.ask() == archs[0]  # then the grid starts over


def test_grid_without_shuffle_is_odometer_order() -> None:
    s = make_strategy(StrategySpec(name="grid", seed=4, grid={"shuffle": False}), TINY)
    assert [TINY.rank(s.ask()) for _ in range(6)] == list(range(6))


@pytest.mark.parametrize("n", [1, 2, 3, 17, 64, 1000, 15625])
def test_scrambled_ranks_are_a_permutation(n: int) -> None:
    from kubenas.core.strategies.grid import ScrambledRanks

    perm = ScrambledRanks(n, seed=7)
    assert sorted(perm[i] for i in range(n)) == list(range(n))


def test_scrambled_ranks_need_nothing_of_the_size_of_a_huge_space() -> None:
    from kubenas.core.strategies.grid import ScrambledRanks

    n = 5**60
    perm = ScrambledRanks(n, seed=1)
    values = [perm[i] for i in range(200)]
    assert len(set(values)) == 200 and all(0 <= v < n for v in values)


@pytest.mark.parametrize("name", ["evolution", "progressive"])
def test_guided_strategies_beat_random_on_a_smooth_space(name: str) -> None:
    def best_found(strategy: str, seed: int) -> float:
        return max(reward(CELL, a) for a in sequential(make(strategy, CELL, seed), 60, lambda a: reward(CELL, a)))

    guided = np.mean([best_found(name, seed) for seed in range(3)])
    assert guided > np.mean([best_found("random", seed) for seed in range(3)])


def test_progressive_finds_the_optimum_of_a_separable_space_quickly() -> None:
    s = make("progressive", CELL, seed=0)
    archs = sequential(s, 60, lambda a: reward(CELL, a))
    assert max(reward(CELL, a) for a in archs) == pytest.approx(6.0)


def test_progressive_fits_the_best_half_and_the_most_recent_others_beyond_its_cap() -> None:
    s = make_strategy(StrategySpec(name="progressive", seed=1, progressive={"maxPoints": 10}), CELL)
    scores = [float((7 * i) % 30) for i in range(30)]  # distinct, the best not the most recent
    for i, score in enumerate(scores):
        s.tell(i, s.ask(), Observation(reward=score))
    x, y = s._training_set()  # type: ignore[attr-defined,misc]
    best = sorted(range(30), key=lambda i: -scores[i])[:5]
    kept = sorted(set(best) | {29, 28, 27, 26, 24})  # result 25 is among the best five
    from kubenas.core.strategies.surrogate import normal_scores

    assert y.tolist() == normal_scores(np.array([scores[i] for i in kept])).tolist()  # the surrogate sees ranks
    assert x.tolist() == [list(s.indices[i]) for i in kept]  # type: ignore[attr-defined]


def test_progressive_parallel_asks_enter_the_surrogate_at_its_prediction() -> None:
    # Kriging believer: a pending candidate leaves the posterior mean where it was and makes the
    # model sure of it, so the next parallel ask prefers other spots.
    s = make("progressive", CELL, seed=2)
    archs = sequential(s, 25, lambda a: reward(CELL, a))
    pending = s.ask()
    s.ask()
    key = np.array([cell_indices(pending)])
    _, std = s.model.mean_std(key)  # type: ignore[attr-defined]
    assert s.model._x[0].shape[0] == len(archs) + 1  # type: ignore[attr-defined]
    assert std[0] < 0.2
    s.tell(25, pending, Observation(reward=reward(CELL, pending)))
    assert list(s.pending) == [26]  # type: ignore[attr-defined]


def test_progressive_asks_ahead_of_the_design_results_continue_the_balanced_design() -> None:
    # Eight trials outstanding: asks 10..16 come before the tenth result. They are a second balanced
    # block (each choice of each decision about equally often), not random draws, and replaying the
    # same interleaving makes the same asks.
    settings = {"initialSamples": 10}

    def run() -> tuple[Strategy, list[tuple[int, ...]]]:
        s = make_strategy(StrategySpec(name="progressive", seed=5, progressive=settings), CELL)
        archs = [s.ask() for _ in range(8)]
        for i in range(12):  # first in, first out: a tell, then an ask
            s.tell(i, archs[i], Observation(reward=reward(CELL, archs[i])))
            archs.append(s.ask())
        return s, [cell_indices(a) for a in archs]

    s, rows = run()
    assert len(set(rows)) == len(rows)
    extra = rows[10:17]  # asked with at most 9 results in
    block = s.design[10:20]  # type: ignore[attr-defined]
    assert [tuple(int(v) for v in r) for r in block[:7]] == extra
    for d, decision in enumerate(CELL.decisions):
        counts = np.bincount(block[:, d], minlength=decision.cardinality)
        assert counts.min() == counts.max() == 2, decision.name
    assert s.pending and run()[1] == rows


def test_progressive_without_asks_ahead_draws_one_design_block() -> None:
    s = make_strategy(StrategySpec(name="progressive", seed=5, progressive={"initialSamples": 10}), CELL)
    sequential(s, 20, lambda a: reward(CELL, a))
    assert len(s.design) == 10  # type: ignore[attr-defined]


def cell_indices(arch: dict) -> tuple[int, ...]:
    return tuple(d.index(arch[d.name]) for d in CELL.decisions)


def test_reinforce_concentrates_its_policy_on_good_choices() -> None:
    s = make("reinforce", CELL, seed=0)
    archs = sequential(s, 120, lambda a: reward(CELL, a))
    first, last = archs[:30], archs[-30:]
    assert np.mean([reward(CELL, a) for a in last]) > np.mean([reward(CELL, a) for a in first]) + 0.5


def test_surrogate_erf_matches_math_erf() -> None:
    from kubenas.core.strategies.surrogate import _erf

    xs = np.linspace(-4, 4, 81)
    assert np.max(np.abs(_erf(xs) - np.array([math.erf(x) for x in xs]))) < 2e-7


def test_surrogate_ranks_an_additive_function() -> None:
    from kubenas.core.strategies.surrogate import HammingGP

    rng = np.random.default_rng(0)
    sizes = [5] * 6
    weights = rng.normal(size=(6, 5))
    x = rng.integers(0, 5, size=(80, 6))
    y = weights[np.arange(6), x].sum(axis=1)
    gp = HammingGP(sizes)
    gp.select_hyperparameters(x[:60], y[:60])
    gp.fit(x[:60], y[:60])
    predicted = gp.mean(x[60:])
    assert np.corrcoef(predicted, y[60:])[0, 1] > 0.7


def test_importing_the_registry_loads_neither_torch_nor_optuna() -> None:
    code = "import sys, kubenas.core.strategies; print('torch' in sys.modules, 'optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_surrogate_normal_scores_keep_the_order_and_share_ties() -> None:
    from kubenas.core.strategies.surrogate import normal_scores

    z = normal_scores(np.array([3.0, 1.0, 2.0, 2.0, 10.0, -50.0]))
    assert np.argsort(z, kind="stable").tolist() == [5, 1, 2, 3, 0, 4]
    assert z[2] == z[3] and z[4] == pytest.approx(-z[5])  # a far outlier is only one rank away
    assert z.mean() == pytest.approx(0.0)


def test_surrogate_weights_the_decision_that_matters_most() -> None:
    from kubenas.core.strategies.surrogate import HammingGP

    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(60, 5))
    y = 3.0 * (x[:, 0] == 2) + 0.1 * rng.normal(size=60)  # only decision 0 matters
    gp = HammingGP([4] * 5)
    gp.select_hyperparameters(x, y)
    assert int(np.argmax(gp.weights)) == 0 and gp.weights[0] > 2 * gp.weights[1:].max()


def test_progressive_starts_with_a_balanced_design() -> None:
    s = make_strategy(StrategySpec(name="progressive", seed=4, progressive={"initialSamples": 10}), CELL)
    first = [cell_indices(s.ask()) for _ in range(10)]
    for d, decision in enumerate(CELL.decisions):
        counts = np.bincount([row[d] for row in first], minlength=decision.cardinality)
        assert counts.max() - counts.min() <= 1, decision.name


def test_surrogate_places_numbers_by_rank_and_leaves_labels_unordered() -> None:
    from kubenas.core.strategies.surrogate import rank_positions

    assert rank_positions([64, 16, 32, 128]) == [2 / 3, 0.0, 1 / 3, 1.0]
    assert rank_positions([0.1, 0.001, 0.01]) == [1.0, 0.0, 0.5]
    assert rank_positions(["a", "b", "c"]) is None
    assert rank_positions([True, False, True]) is None
    assert rank_positions([16, 32]) is None  # two values: a mismatch is all there is to learn
    assert rank_positions([1, "x", 2]) is None


def test_surrogate_uses_the_order_of_a_smooth_numeric_decision() -> None:
    # One ordered decision of 12 widths, the reward smooth in it; the widths in between are never
    # seen. With the order the model predicts them from their neighbours; without it, it cannot.
    from kubenas.core.strategies.surrogate import HammingGP, rank_positions

    rng = np.random.default_rng(3)
    sizes = [12, 3, 3]
    x = np.stack([rng.choice([0, 2, 4, 6, 8, 11], size=60), rng.integers(0, 3, 60), rng.integers(0, 3, 60)], axis=1)
    curve = np.sin(np.linspace(0.0, np.pi, 12))
    y = curve[x[:, 0]] + 0.2 * (x[:, 1] == 1) + 0.01 * rng.normal(size=60)
    held_out = np.stack([np.array([1, 3, 5, 7, 9, 10]), np.zeros(6, dtype=np.int64), np.zeros(6, dtype=np.int64)], 1)
    predictions = {}
    for ordered in (False, True):
        positions = [rank_positions(list(range(12))) if ordered else None, None, None]
        gp = HammingGP(sizes, positions)
        gp.select_hyperparameters(x, y)
        gp.fit(x, y)
        predictions[ordered] = gp.rewards(gp.mean(held_out))
        assert gp.order_weights.any() == ordered
    truth = curve[held_out[:, 0]]
    assert np.corrcoef(predictions[True], truth)[0, 1] > 0.9
    assert np.abs(predictions[True] - truth).mean() < 0.5 * np.abs(predictions[False] - truth).mean()


def test_surrogate_leaves_the_order_of_numbered_labels_unused() -> None:
    # Numbers whose order means nothing (each choice's reward drawn independently): the marginal
    # likelihood keeps the plain mismatch kernel.
    from kubenas.core.strategies.surrogate import HammingGP, rank_positions

    rng = np.random.default_rng(4)
    sizes = [8, 8, 4]
    effects = rng.normal(size=(3, 8))
    x = rng.integers(0, 8, size=(80, 3)) % np.array(sizes)
    y = effects[np.arange(3), x].sum(axis=1)
    gp = HammingGP(sizes, [rank_positions(list(range(s))) for s in sizes])
    gp.select_hyperparameters(x, y)
    assert not gp.order_weights.any()


def test_progressive_orders_int_ranges_and_numeric_choices_only() -> None:
    space = SearchSpace(
        (
            IntRange("width", 8, 64, 8),
            Categorical("op", ("conv", "pool", "skip")),
            Categorical("depth", (4, 2, 8)),
            FloatRange("lr", 1e-4, 1e-1, log=True),
            Categorical("bias", (True, False)),
        )
    )
    s = make("progressive", space, seed=0)
    assert s.model.ordered == [0, 2, 3]  # type: ignore[attr-defined]


def test_float_grids_keep_tiny_and_huge_ranges_inside_and_distinct() -> None:
    """Grid points are tidied of float noise (0.1 + 2 * 0.1 is 0.3) without flattening tiny ranges
    (12 decimals would make 1e-14 a 0, outside the range) or leaving a point off the step grid."""
    ranges = [
        FloatRange("a", 1e-14, 1e-13, log=True),
        FloatRange("b", 0.0, 1e-12),
        FloatRange("c", 1e5, 1e5 + 1, step=0.001),
        FloatRange("d", 0.0001, 0.1, log=True),
    ]
    for r in ranges:
        values = r.values()
        assert len(set(values)) == len(values) and all(r.contains(v) and isinstance(v, float) for v in values)
    assert FloatRange("e", 0.1, 0.5, step=0.1).values() == (0.1, 0.2, 0.3, 0.4, 0.5)
    assert FloatRange("f", 0.0001, 0.1, log=True).values()[1] == 0.000562341325  # as before: 12 decimals

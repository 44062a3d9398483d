"""Several objectives: the API form, the core's Pareto front, MOTPE and NSGA-II under replay, the
front in status and in the results folder, and the benchmark's hypervolume."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from rich.console import Console

from kubenas.api.crd import crds
from kubenas.api.v1alpha1 import Objective, ObjectiveMetric, SearchExperimentSpec
from kubenas.bench.hypervolume import Normaliser, hypervolume, parse_objective
from kubenas.bench.tabular import benchmark, load_table
from kubenas.core.driver import AttemptEnded, Candidate, Driver, Proposed, ResultStored, Store
from kubenas.core.errors import SpecError
from kubenas.core.pareto import Front, dominates, signed_values
from kubenas.core.records import TrialRecord
from kubenas.core.search import Search
from kubenas.core.strategies import make_strategy
from kubenas.core.strategies.base import Observation
from kubenas.local.toy_trial import score
from tests.conftest import experiment_dict, run_locally, running_status

TWO = [{"name": "val_accuracy", "direction": "maximize"}, {"name": "latency_ms", "direction": "minimize"}]
OBJECTIVES = [ObjectiveMetric(name="acc"), ObjectiveMetric(name="lat", direction="minimize")]


def spec(**overrides: Any) -> SearchExperimentSpec:
    doc = experiment_dict(**({"objective": {"metrics": TWO}, "strategy": {"name": "tpe", "seed": 2}} | overrides))
    return SearchExperimentSpec.model_validate(doc["spec"])


def trial(index: int, acc: float, lat: float, phase: str = "Succeeded") -> TrialRecord:
    return TrialRecord(
        index=index,
        architecture={"x": index},
        name=f"t-{index:05d}",
        phase=phase,  # type: ignore[arg-type]
        reward=acc,
        metrics={"acc": acc, "lat": lat},
    )


# -- the API -----------------------------------------------------------------------------------
def test_metric_and_direction_follow_the_first_objective_and_the_single_form_stays() -> None:
    o = Objective.model_validate({"metrics": [{"name": "lat", "direction": "minimize"}, {"name": "acc"}]})
    assert (o.metric, o.direction, o.multi) == ("lat", "minimize", True)
    single = Objective.model_validate({"metric": "acc", "direction": "minimize"})
    assert (single.multi, [m.name for m in single.objectives()]) == (False, ["acc"])
    assert Objective().metric == "val_accuracy"
    with pytest.raises(ValidationError, match="distinct"):
        Objective.model_validate({"metrics": [{"name": "acc"}, {"name": "acc"}]})


def test_the_crd_leaves_metric_and_direction_undefaulted_so_a_rule_sees_them_missing() -> None:
    schema = crds()["kubenas.io_searchexperiments.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    objective = schema["properties"]["spec"]["properties"]["objective"]
    assert "default" not in objective["properties"]["metric"]
    assert "default" not in objective["properties"]["direction"]
    assert objective["properties"]["metrics"]["x-kubernetes-list-map-keys"] == ["name"]


def test_strategies_without_a_pareto_search_are_refused_by_the_spec_and_by_make_strategy() -> None:
    with pytest.raises(ValidationError, match="Pareto front"):
        spec(strategy={"name": "evolution", "seed": 1})
    search = Search(spec())
    with pytest.raises(SpecError, match="several objectives"):
        make_strategy(
            spec(strategy={"name": "evolution", "seed": 1}, objective={"metric": "a"}).strategy,
            search.space,
            OBJECTIVES,
        )


# -- the front ---------------------------------------------------------------------------------
def test_the_front_keeps_exactly_the_non_dominated_succeeded_trials() -> None:
    front = Front(OBJECTIVES)
    assert dominates((1.0, -1.0), (0.5, -1.0)) and not dominates((1.0, -2.0), (0.5, -1.0))
    assert front.add(trial(0, 0.5, 5.0))
    assert front.add(trial(1, 0.7, 6.0))  # better accuracy, slower: both stay
    assert not front.add(trial(2, 0.6, 7.0))  # dominated by #1
    assert not front.add(trial(3, 0.99, 0.1, phase="Failed"))
    assert not front.add(TrialRecord(index=4, architecture={}, phase="Succeeded", metrics={"acc": 0.9}))
    assert front.add(trial(5, 0.7, 4.0))  # dominates both #0 and #1
    assert [t.index for t in front.members()] == [5]
    assert signed_values(OBJECTIVES, {"acc": 0.5, "lat": math.inf}) is None


def test_a_bounded_front_keeps_the_extremes_and_spreads_the_rest() -> None:
    trials = [trial(i, i / 100, i / 10) for i in range(80)]  # all on one front
    front = Front(OBJECTIVES, trials)
    assert len(front) == 80
    shown = front.bounded(10)
    indexes = [t.index for t in shown]
    assert len(shown) == 10 and indexes[0] == 0 and indexes[-1] == 79
    gaps = [b - a for a, b in itertools.pairwise(indexes)]
    assert max(gaps) <= 3 * min(gaps)  # spread along the front, not bunched at one end


def test_the_driver_keeps_the_front_and_a_rebuilt_driver_has_the_same() -> None:
    s = spec(budget={"maxTrials": 8, "parallelTrials": 8})
    driver = Driver(s, name_prefix="mo")
    driver.start()
    driver.handle(Proposed(tuple(Candidate(i, {"x": i}) for i in range(8))))
    values = [(0.5, 5.0), (0.7, 6.0), (0.6, 7.0), (0.9, 9.0), (0.4, 4.5), (0.8, 8.0), (0.3, 9.0), (0.85, 8.5)]
    for i, (acc, lat) in enumerate(values):
        commands = driver.handle(AttemptEnded(i, 1, 0, json.dumps({"val_accuracy": acc, "latency_ms": lat})))
        driver.handle(*(ResultStored(c.trial.index) for c in commands if isinstance(c, Store)))
    assert driver.front is not None
    assert [t.index for t in driver.front.members()] == [0, 1, 3, 4, 5, 7]
    assert driver.best is not None and driver.best.index == 3  # the best on the first objective
    rebuilt = Driver(s, driver.trials, name_prefix="mo")
    assert rebuilt.front is not None and [t.index for t in rebuilt.front.members()] == [0, 1, 3, 4, 5, 7]
    st = running_status(s, driver, front=driver.front)
    assert st["paretoSize"] == 6
    assert st["paretoFront"][0] == {"name": "mo-00000", "values": {"val_accuracy": 0.5, "latency_ms": 5.0}}
    assert Driver(spec(objective={"metric": "val_accuracy"})).front is None


# -- strategies --------------------------------------------------------------------------------
def _observe(arch: dict[str, Any]) -> Observation:
    acc = score(arch)
    return Observation(reward=acc, metrics={"val_accuracy": acc, "latency_ms": 2 + 8 * acc + len(str(arch)) % 3})


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random"])
def test_multi_objective_strategies_replay_exactly_with_parallel_asks(name: str) -> None:
    s = spec(strategy={"name": name, "seed": 4}, budget={"maxTrials": 40, "parallelTrials": 3})
    live = Search(s)
    history: list[TrialRecord] = []
    told = 0
    for i in range(30):
        (c,) = live.ask(i, 1)
        history.append(TrialRecord(index=i, architecture=c.architecture))
        if i >= 2:  # two asks always ahead of rewards
            j = i - 2
            obs = _observe(history[j].architecture)
            live.tell(j, obs)
            history[j] = history[j].with_(
                phase="Succeeded", reward=obs.reward, metrics=obs.metrics, tell_sequence=told, asks_before_tell=i + 1
            )
            told += 1
    rebuilt = Search(s, history)
    assert rebuilt.strategy.state_digest() == live.strategy.state_digest()
    assert rebuilt.ask(30, 3) == live.ask(30, 3)
    if name != "random":
        assert len(live.strategy.study.directions) == 2  # type: ignore[attr-defined]


# -- the results folder ------------------------------------------------------------------------
def test_a_local_multi_objective_run_writes_the_front_and_pareto_png(tmp_path: Path) -> None:
    doc = experiment_dict(
        objective={"metrics": TWO}, strategy={"name": "nsga2", "seed": 1}, budget={"maxTrials": 10, "parallelTrials": 5}
    )
    result, folder = run_locally(tmp_path, doc)
    assert result.reason == "MaxTrialsReached"
    summary = json.loads((folder / "summary.json").read_text())
    pareto = summary["pareto"]
    assert pareto["objectives"] == TWO and pareto["size"] == len(pareto["trials"]) >= 1
    rows = {r["trial"]: r for r in json.loads((folder / "trials.json").read_text())}
    front = [
        (rows[t["trial"]]["metrics"]["val_accuracy"], rows[t["trial"]]["metrics"]["latency_ms"])
        for t in pareto["trials"]
    ]
    for r in rows.values():  # no trial dominates a member of the front
        acc, lat = r["metrics"]["val_accuracy"], r["metrics"]["latency_ms"]
        assert not any(acc >= a and lat <= b and (acc > a or lat < b) for a, b in front)
    assert summary["best"]["trial"] in {t["trial"] for t in pareto["trials"]}
    assert (folder / "pareto.png").stat().st_size > 1000


# -- the benchmark's hypervolume ---------------------------------------------------------------
def test_hypervolume_is_exact_in_two_dimensions() -> None:
    assert hypervolume([]) == 0.0
    assert hypervolume([(0.0, 0.0)]) == 1.0
    assert hypervolume([(0.5, 0.5)]) == pytest.approx(0.25)
    # a staircase: 0.375 + 0.375 - 0.25 (their overlap); the dominated point and the one on the edge add nothing
    assert hypervolume([(0.25, 0.5), (0.5, 0.25), (0.6, 0.6), (1.0, 0.0)]) == pytest.approx(0.5)
    norm = Normaliser((parse_objective("a:max"), parse_objective("b:min")), (0.0, 10.0), (1.0, 20.0))
    assert norm.loss({"a": 1.0, "b": 10.0}) == (0.0, 0.0) and norm.loss({"a": 0.5}) is None
    with pytest.raises(SpecError, match="--objective"):
        parse_objective("val_acc:up")


def test_the_benchmark_reports_hypervolume_by_budget(tmp_path: Path) -> None:
    rows = ["x_a,x_b,acc,size"] + [f"{a},{b},{a * 3 + b},{(a + b) % 5 + a}" for a in range(6) for b in range(6)]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    table = load_table(path, "acc", "acc", [("--objective", "size")])
    objectives = (parse_objective("acc:max"), parse_objective("size:min"))
    columns = {"acc": [v for v, _ in table.rows.values()], "size": list(table.extras["size"].values())}
    norm = Normaliser.of_columns(objectives, columns)
    summary = benchmark(table, "tpe", 30, 2, normaliser=norm)
    out = summary.to_json()
    assert set(out["hypervolume"]) == {"30"}
    assert 0 < out["hypervolume"]["30"]["mean"] <= 1
    whole = hypervolume(
        [x for x in (norm.loss({"acc": a, "size": s}) for a, s in zip(*columns.values(), strict=True)) if x]
    )
    assert out["hypervolume"]["30"]["mean"] <= whole + 1e-9


def test_kubenas_status_shows_the_objectives_the_front_and_the_gpu_hours() -> None:
    from kubenas.api.v1alpha1 import SearchExperiment
    from kubenas.insights.cluster import Snapshot, status_view

    doc = experiment_dict(objective={"metrics": TWO}, strategy={"name": "nsga2", "seed": 1})
    exp = SearchExperiment.model_validate(doc)
    status = {
        "phase": "Running",
        "paretoFront": [
            {"name": "t-00001", "values": {"val_accuracy": 0.7, "latency_ms": 6.0}},
            {"name": "t-00000", "values": {"val_accuracy": 0.9, "latency_ms": 9.0}},
        ],
        "paretoSize": 3,
        "gpuHours": {"used": 1.25, "limit": 4.0},
    }
    console = Console(record=True, width=200)
    console.print(status_view(Snapshot(exp, status, (), datetime.now(UTC))))
    text = console.export_text()
    assert "maximize val_accuracy, minimize latency_ms" in text
    assert "Pareto front (2 of 3 trials)" in text
    assert text.index("t-00000") < text.index("t-00001")  # best first on the first objective
    assert "GPU-hours 1.25 of 4" in text

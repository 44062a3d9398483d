"""Retraining the top k: the retrain strategy, choosing the candidates, and a local two-phase run.

A toy search runs first; a retrain experiment names it as its source and must train exactly its best
distinct architectures, best first, as ordinary trials with their own results folder and leaderboard.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from kubenas.api.strategy import RetrainSettings, StrategySpec
from kubenas.api.v1alpha1 import Objective, SearchExperimentSpec
from kubenas.core.errors import SpecError
from kubenas.core.history import replay
from kubenas.core.records import TrialRecord
from kubenas.core.retrain import SourceRun, resolved, top_architectures
from kubenas.core.space import Categorical, SearchSpace
from kubenas.core.spec_changes import judge_edit
from kubenas.core.strategies import make_strategy
from kubenas.core.strategies.base import Observation
from kubenas.load import ManifestError, parse_experiment
from kubenas.local.journal import read_journal
from kubenas.local.runner import ResumeError, prepare, run
from tests.conftest import experiment_dict

SPACE = SearchSpace((Categorical("a", ("x", "y", "z")), Categorical("b", (1, 2))))
ARCHS = [{"a": "z", "b": 2}, {"a": "x", "b": 1}, {"a": "y", "b": 2}]


def retrain_spec(architectures: list[dict[str, Any]] | None = None, **settings: Any) -> StrategySpec:
    given = [{"architecture": a} for a in (ARCHS if architectures is None else architectures)]
    return StrategySpec.model_validate({"name": "retrain", "seed": 4, "retrain": {"architectures": given, **settings}})


def quiet() -> Console:
    return Console(file=open(os.devnull, "w"), force_terminal=False)


# -- the strategy -------------------------------------------------------------------------------
def test_retrain_proposes_the_architectures_in_order_then_again() -> None:
    strategy = make_strategy(retrain_spec(), SPACE)
    asked = [strategy.ask() for _ in range(5)]
    assert asked == [*ARCHS, *ARCHS[:2]]


def test_results_do_not_change_the_order_and_a_replay_rebuilds_the_state() -> None:
    live = make_strategy(retrain_spec(), SPACE)
    history = []
    for i in range(3):
        arch = live.ask()
        obs = Observation(reward=None, failed=True) if i == 1 else Observation(reward=float(i))
        phase = "Failed" if obs.failed else "Succeeded"
        live.tell(i, arch, obs)
        history.append(TrialRecord(i, arch, phase=phase, reward=obs.reward, tell_sequence=i, asks_before_tell=i + 1))
    rebuilt = make_strategy(retrain_spec(), SPACE)
    replay(rebuilt, history)
    assert rebuilt.state_digest() == live.state_digest()
    assert rebuilt.ask() == live.ask() == ARCHS[0]


def test_an_architecture_outside_the_space_is_refused_with_its_field() -> None:
    with pytest.raises(SpecError) as exc:
        make_strategy(retrain_spec([ARCHS[0], {"a": "w", "b": 1}]), SPACE)
    assert exc.value.field == "spec.strategy.retrain.architectures[1].architecture.a"
    with pytest.raises(SpecError) as missing:
        make_strategy(retrain_spec([{"a": "x"}]), SPACE)
    assert missing.value.field == "spec.strategy.retrain.architectures[0].architecture.b"


def test_an_unresolved_source_cannot_make_a_strategy() -> None:
    spec = StrategySpec.model_validate({"name": "retrain", "retrain": {"source": {"experiment": "search"}}})
    with pytest.raises(SpecError, match="resolved"):
        make_strategy(spec, SPACE)


@pytest.mark.parametrize(
    ("retrain", "field"),
    [
        ({}, "retrain.source"),
        ({"source": {}}, "retrain.source.experiment"),
        ({"source": {"experiment": "a", "results": "b"}}, "retrain.source.experiment"),
        ({"source": {"experiment": "a"}, "topK": 0}, "retrain.topK"),
    ],
)
def test_settings_are_refused_with_the_field_at_fault(retrain: dict[str, Any], field: str) -> None:
    doc = experiment_dict(strategy={"name": "retrain", "retrain": retrain})
    with pytest.raises(ManifestError) as exc:
        parse_experiment(doc)
    assert any(path.startswith(f"spec.strategy.{field}") for path, _ in exc.value.problems), exc.value.problems


def test_a_results_folder_is_refused_on_kubernetes_only() -> None:
    doc = experiment_dict(strategy={"name": "retrain", "retrain": {"source": {"results": "out/search"}}})
    parse_experiment(doc)
    doc["spec"]["trialTemplate"]["image"] = "trainer:1"
    with pytest.raises(ManifestError) as exc:
        parse_experiment(doc, kubernetes=True)
    assert [p for p, _ in exc.value.problems] == ["spec.strategy.retrain.source.results"]


# -- choosing the candidates ----------------------------------------------------------------------
def rec(index: int, arch: dict[str, Any], reward: float | None, phase: str = "Succeeded") -> TrialRecord:
    return TrialRecord(index, arch, name=f"s-{index:05d}", phase=phase, reward=reward)  # type: ignore[arg-type]


def test_top_architectures_are_distinct_succeeded_and_best_first() -> None:
    trials = [
        rec(0, ARCHS[0], -0.30),
        rec(1, ARCHS[1], -0.10),
        rec(2, ARCHS[1], -0.20),  # a repeat: only its best trial counts
        rec(3, ARCHS[2], -0.05, "Pruned"),  # a partial result is no candidate
        rec(4, ARCHS[2], None, "Failed"),
        rec(5, ARCHS[2], -0.25),
    ]
    minimize = Objective(metric="val_loss", direction="minimize")
    top = top_architectures(trials, minimize, 3)
    assert [(c.architecture, c.trial, c.value) for c in top] == [
        (ARCHS[1], "s-00001", 0.10),
        (ARCHS[2], "s-00005", 0.25),
        (ARCHS[0], "s-00000", 0.30),
    ]
    assert len(top_architectures(trials, minimize, 2)) == 2


def source_spec(max_trials: int = 2, top_k: int = 2) -> SearchExperimentSpec:
    doc = experiment_dict(
        searchSpace={
            "hyperparameters": [
                {"name": "a", "type": "categorical", "choices": ["x", "y", "z"]},
                {"name": "b", "type": "categorical", "choices": [1, 2]},
            ]
        },
        strategy={"name": "retrain", "retrain": {"source": {"experiment": "search"}, "topK": top_k}},
        budget={"maxTrials": max_trials},
    )
    return SearchExperimentSpec.model_validate(doc["spec"])


def test_a_missing_unfinished_or_empty_source_is_an_error_naming_it() -> None:
    field = "spec.strategy.retrain.source.experiment"
    finished = [rec(0, ARCHS[0], 0.5), rec(1, ARCHS[1], 0.7)]
    cases = [
        (None, "experiment search does not exist"),
        (SourceRun("search", Objective(), finished, False, "Running"), r"has not finished \(phase Running\)"),
        (SourceRun("search", Objective(), [rec(0, ARCHS[0], None, "Failed")], True), "no succeeded trial"),
    ]
    for run_, message in cases:
        with pytest.raises(SpecError, match=message) as exc:
            resolved(source_spec(), run_)
        assert exc.value.field == field
    spec = resolved(source_spec(), SourceRun("search", Objective(), finished, True))
    assert spec.strategy.retrain is not None
    assert [c.architecture for c in spec.strategy.retrain.architectures] == [ARCHS[1], ARCHS[0]]


def test_max_trials_below_the_number_of_architectures_is_refused() -> None:
    finished = [rec(i, a, 0.1 * i) for i, a in enumerate(ARCHS)]
    with pytest.raises(SpecError) as exc:
        resolved(source_spec(max_trials=2, top_k=3), SourceRun("search", Objective(), finished, True))
    assert exc.value.field == "spec.budget.maxTrials"


def test_an_edit_does_not_see_the_resolved_list_as_a_strategy_change() -> None:
    given = source_spec(max_trials=2)
    accepted = resolved(given, SourceRun("search", Objective(), [rec(0, ARCHS[0], 0.5), rec(1, ARCHS[1], 0.7)], True))
    raised = given.model_copy(update={"budget": given.budget.model_copy(update={"max_trials": 4})})
    spec, verdict = judge_edit(accepted, raised)
    assert verdict.accepted, verdict.message
    assert spec.budget.max_trials == 4 and spec.strategy == accepted.strategy
    other = StrategySpec.model_validate({"name": "retrain", "retrain": {"source": {"experiment": "other"}}})
    _, refused = judge_edit(accepted, given.model_copy(update={"strategy": other}))
    assert not refused.accepted and "spec.strategy" in refused.message


# -- local mode: a search, then a retrain of its top 2 ---------------------------------------------
def write(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    doc["metadata"]["name"] = name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_local_retrain_trains_the_top_two_of_a_finished_search(tmp_path: Path) -> None:
    results = tmp_path / "results"
    search = write(tmp_path, "search", experiment_dict(budget={"maxTrials": 6, "parallelTrials": 2}))
    retrain_doc = experiment_dict(
        strategy={"name": "retrain", "retrain": {"source": {"experiment": "search"}, "topK": 2}},
        budget={"maxTrials": 2, "parallelTrials": 2},
        trialTemplate={"command": experiment_dict()["spec"]["trialTemplate"]["command"], "settings": {"epochs": 3}},
    )
    retrain = write(tmp_path, "retrain", retrain_doc)

    with pytest.raises(ResumeError, match="experiment search does not exist"):
        prepare(retrain, results / "retrain", None)
    assert not (results / "retrain").exists()  # a refused retrain leaves no folder behind

    exp, folder = prepare(search, results / "search", None)
    assert run(exp, folder, quiet()).phase == "Succeeded"
    source_trials, _ = read_journal(folder)
    best = sorted((t for t in source_trials if t.phase == "Succeeded"), key=lambda t: -(t.reward or 0))
    distinct = list({json.dumps(dict(t.architecture), sort_keys=True): t for t in reversed(best)}.values())[::-1]

    exp2, folder2 = prepare(retrain, results / "retrain", None)
    outcome = run(exp2, folder2, quiet())
    assert (outcome.phase, outcome.reason) == ("Succeeded", "MaxTrialsReached")
    trials, _ = read_journal(folder2)
    assert [dict(t.architecture) for t in trials] == [dict(t.architecture) for t in distinct[:2]]
    # the toy trial is a function of the architecture: the same architectures score what they scored
    assert [t.metrics["val_accuracy"] for t in trials] == [t.metrics["val_accuracy"] for t in distinct[:2]]
    summary = json.loads((folder2 / "summary.json").read_text())
    assert summary["best"]["trial"].startswith("retrain-") and summary["trials"] == 2
    # the resolved list is kept with the run, so a resume replays it without reading the source again
    stored = yaml.safe_load((folder2 / "experiment.yaml").read_text())
    kept = stored["spec"]["strategy"]["retrain"]["architectures"]
    assert [c["trial"] for c in kept] == [t.name for t in distinct[:2]]
    (folder / "journal.jsonl").unlink()
    exp3, _ = prepare(retrain, None, folder2)
    assert exp3.spec.strategy == exp2.spec.strategy


def test_a_local_retrain_of_an_interrupted_search_is_refused(tmp_path: Path) -> None:
    results = tmp_path / "results"
    search = write(tmp_path, "search", experiment_dict(budget={"maxTrials": 2}))
    exp, folder = prepare(search, results / "search", None)
    assert run(exp, folder, quiet()).phase == "Succeeded"
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "phase": "Stopped"}))
    doc = experiment_dict(strategy={"name": "retrain", "retrain": {"source": {"results": str(folder)}, "topK": 1}})
    with pytest.raises(ResumeError, match=r"has not finished \(phase Stopped\)"):
        prepare(write(tmp_path, "retrain", doc), results / "retrain", None)


def test_retrain_settings_default_to_the_top_three() -> None:
    assert RetrainSettings.model_validate({"source": {"experiment": "s"}}).top_k == 3

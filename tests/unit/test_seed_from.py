"""``strategy.seedFrom``: a search starts from another finished search's best architectures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from kubenas.api.v1alpha1 import Objective, SearchExperimentSpec
from kubenas.core.errors import SpecError
from kubenas.core.records import TrialRecord
from kubenas.core.retrain import SourceRun, resolved
from kubenas.core.search import Search
from kubenas.core.spec_changes import judge_edit
from kubenas.load import ManifestError, load_experiment, parse_document
from kubenas.local.journal import read_journal
from kubenas.local.runner import ResumeError, prepare, run
from tests.conftest import experiment_dict
from tests.unit.test_replay import drive

SPACE = {"cell": {"nodes": 4}}
SEEDS = [
    {"edge_1_0": "nor_conv_3x3", "edge_2_0": "nor_conv_3x3", "edge_2_1": "skip_connect"}
    | {"edge_3_0": "skip_connect", "edge_3_1": "nor_conv_1x1", "edge_3_2": "nor_conv_3x3"},
    {"edge_1_0": "avg_pool_3x3", "edge_2_0": "none", "edge_2_1": "nor_conv_1x1"}
    | {"edge_3_0": "nor_conv_3x3", "edge_3_1": "none", "edge_3_2": "skip_connect"},
    {"edge_1_0": "skip_connect", "edge_2_0": "nor_conv_1x1", "edge_2_1": "none"}
    | {"edge_3_0": "none", "edge_3_1": "avg_pool_3x3", "edge_3_2": "nor_conv_1x1"},
]
SETTINGS = {"evolution": {"populationSize": 6, "sampleSize": 3}, "progressive": {"initialSamples": 5}}


def spec_of(strategy: str, seed_from: dict[str, Any], **spec: Any) -> SearchExperimentSpec:
    doc = experiment_dict(
        searchSpace=SPACE,
        strategy={"name": strategy, "seed": 3, "seedFrom": seed_from}
        | ({strategy: SETTINGS[strategy]} if strategy in SETTINGS else {}),
        budget={"maxTrials": 40, "parallelTrials": 4},
        **spec,
    )
    return SearchExperimentSpec.model_validate(doc["spec"])


def seeded(strategy: str) -> SearchExperimentSpec:
    return spec_of(strategy, {"experiment": "src", "architectures": [{"architecture": a} for a in SEEDS]})


@pytest.mark.parametrize("strategy", ["evolution", "tpe", "progressive", "reinforce"])
def test_the_first_candidates_are_the_sources_best_and_a_replay_keeps_them(strategy: str) -> None:
    spec = seeded(strategy)
    live = Search(spec)
    history = drive(live, 14)
    assert live.architectures[: len(SEEDS)] == SEEDS
    assert SEEDS[0] not in live.architectures[len(SEEDS) :], "a seed was proposed twice"
    rebuilt = Search(spec, history)
    assert rebuilt.strategy.state_digest() == live.strategy.state_digest()
    assert rebuilt.ask(live.asked, 3) == live.ask(live.asked, 3)
    unseeded = Search(spec.model_copy(update={"strategy": spec.strategy.model_copy(update={"seed_from": None})}))
    assert unseeded.ask(0, 3)[0].architecture != SEEDS[0]


def source(trials: list[TrialRecord], finished: bool = True) -> SourceRun:
    return SourceRun("src", Objective(), trials, finished, "Succeeded" if finished else "Running")


def record(index: int, arch: dict[str, str], reward: float | None, phase: str = "Succeeded") -> TrialRecord:
    return TrialRecord(index=index, architecture=arch, name=f"src-{index:05d}", phase=phase, reward=reward)  # type: ignore[arg-type]


def test_the_source_is_read_once_into_the_accepted_spec_and_an_edit_keeps_it() -> None:
    given = spec_of("evolution", {"experiment": "src", "topK": 2})
    trials = [record(0, SEEDS[2], 0.7), record(1, SEEDS[0], 0.9), record(2, SEEDS[1], None, "Failed")]
    trials.append(record(3, SEEDS[1], 0.8))
    accepted = resolved(given, source(trials))
    assert accepted.strategy.seed_from is not None
    got = [(c.trial, c.value) for c in accepted.strategy.seed_from.architectures]
    assert got == [("src-00001", 0.9), ("src-00003", 0.8)]
    assert Search(accepted).ask(0, 2)[0].architecture == SEEDS[0]
    kept, verdict = judge_edit(accepted, given)  # the user's object keeps no list: no edit
    assert verdict.accepted and kept is accepted
    other = spec_of("evolution", {"experiment": "src", "topK": 3})
    assert not judge_edit(accepted, other)[1].accepted


@pytest.mark.parametrize(
    ("run", "words"),
    [
        (None, "experiment src does not exist"),
        (source([record(0, SEEDS[0], 0.9)], finished=False), "has not finished (phase Running): start from it"),
        (source([record(0, SEEDS[0], None, "Failed")]), "no succeeded trial to start from"),
    ],
)
def test_an_unusable_source_is_refused_naming_it(run: SourceRun | None, words: str) -> None:
    with pytest.raises(SpecError) as err:
        resolved(spec_of("tpe", {"experiment": "src"}), run)
    assert err.value.field == "spec.strategy.seedFrom.experiment" and words in str(err.value)


def test_an_architecture_this_space_refuses_is_named_by_its_path() -> None:
    foreign = {"edge_1_0": "sep_conv_3x3", **{k: v for k, v in SEEDS[0].items() if k != "edge_1_0"}}
    with pytest.raises(SpecError) as err:
        resolved(spec_of("reinforce", {"experiment": "src"}), source([record(0, foreign, 0.9)]))
    assert err.value.field.startswith("spec.strategy.seedFrom.architectures[0].architecture")


def problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ManifestError) as err:
        parse_document(doc)
    return err.value.problems


def test_admission_refuses_seed_from_where_it_means_nothing() -> None:
    doc = experiment_dict(strategy={"name": "random", "seedFrom": {"experiment": "src"}})
    doc["spec"]["trialTemplate"]["image"] = "registry.example/trainer:1"
    assert any(p == "spec.strategy.seedFrom" for p, _ in problems(doc))
    doc["spec"]["strategy"] = {"name": "tpe", "seedFrom": {"results": "results/src"}}
    assert any(p == "spec.strategy.seedFrom.results" for p, _ in problems(doc))
    doc["spec"]["strategy"] = {"name": "tpe", "seedFrom": {"experiment": "src", "topK": 3}}
    parse_document(doc)


def test_a_local_search_starts_from_the_best_of_a_finished_one(tmp_path: Path) -> None:
    results = tmp_path / "results"
    src = experiment_dict(searchSpace=SPACE, budget={"maxTrials": 6, "parallelTrials": 2})
    src["metadata"]["name"] = "src"
    (tmp_path / "src.yaml").write_text(yaml.safe_dump(src))
    seeded_doc = experiment_dict(
        searchSpace=SPACE,
        strategy={"name": "evolution", "seed": 2, "seedFrom": {"experiment": "src", "topK": 2}},
        budget={"maxTrials": 4, "parallelTrials": 2},
    )
    seeded_doc["metadata"]["name"] = "seeded"
    (tmp_path / "seeded.yaml").write_text(yaml.safe_dump(seeded_doc))
    with pytest.raises(ResumeError, match=r"seedFrom\.experiment: the source experiment src does not exist"):
        prepare(tmp_path / "seeded.yaml", results / "seeded", None)
    with open(os.devnull, "w") as devnull:
        run(*prepare(tmp_path / "src.yaml", results / "src", None), Console(file=devnull))
        exp, folder = prepare(tmp_path / "seeded.yaml", results / "seeded", None)
        run(exp, folder, Console(file=devnull))
    source_trials, _ = read_journal(results / "src")
    best = sorted((t for t in source_trials if t.phase == "Succeeded"), key=lambda t: -(t.reward or 0))[:2]
    trials, _ = read_journal(folder)
    assert [t.architecture for t in trials[:2]] == [t.architecture for t in best]
    stored = load_experiment(folder / "experiment.yaml").spec.strategy.seed_from
    assert stored is not None and [c.trial for c in stored.architectures] == [t.name for t in best]

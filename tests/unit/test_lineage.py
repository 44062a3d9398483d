"""Lineage: a derived candidate names its parent(s), the record keeps them, and a replay proposes the same."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from kubenas.controller.protocol import candidate_from_json, candidate_to_json
from kubenas.core.codec import record_from_wire, trial_wire
from kubenas.core.driver import Candidate, Create, Driver, Proposed
from kubenas.core.records import TrialRecord
from kubenas.core.search import Search
from kubenas.local.journal import read_journal
from tests.conftest import experiment_dict, run_locally
from tests.unit.test_replay import drive, make_spec


def differing(a: dict[str, object], b: dict[str, object]) -> int:
    return sum(a[k] != b[k] for k in a)


def test_an_evolution_child_names_its_parent_and_differs_from_it_by_the_mutations() -> None:
    spec = make_spec("evolution", "cell")  # population 20: asks 0..19 are random
    search = Search(spec)
    history = drive(search, 36)
    told_before: dict[int, int] = {}  # child index -> asks made when its parent was told
    by_index = {t.index: t for t in history}
    children = [i for i, parents in enumerate(search.strategy.parents) if parents]
    assert children, "no child was bred from the population"
    assert all(not search.strategy.parents[i] for i in range(20)), "a random first-population member has a parent"
    for i in children:
        (parent,) = search.strategy.parents[i]
        assert parent < i
        assert by_index[parent].told, "a parent must be a told result"
        told_before[i] = by_index[parent].asks_before_tell or 0
        assert told_before[i] <= i, "the parent was told after its child was asked"
        assert differing(search.architectures[parent], search.architectures[i]) == 1  # mutations: 1


def test_a_progressive_neighbour_names_its_centre() -> None:
    doc = experiment_dict(
        searchSpace={"cell": {"nodes": 4}},
        strategy={"name": "progressive", "seed": 3, "progressive": {"initialSamples": 6, "candidates": 50}},
        budget={"maxTrials": 40, "parallelTrials": 4},
    )
    from kubenas.api.v1alpha1 import SearchExperimentSpec

    search = Search(SearchExperimentSpec.model_validate(doc["spec"]))
    drive(search, 20)
    parents = search.strategy.parents
    assert all(not p for p in parents[:6])
    children = [i for i, p in enumerate(parents) if p]
    assert children
    for i in children:
        (centre,) = parents[i]
        assert centre < i
        assert differing(search.architectures[centre], search.architectures[i]) == 1  # a neighbour


@pytest.mark.parametrize("strategy", ["random", "grid", "tpe", "reinforce"])
def test_strategies_that_draw_anew_propose_no_parents(strategy: str) -> None:
    search = Search(make_spec(strategy, "cell"))
    drive(search, 12)
    assert not any(search.strategy.parents)


@pytest.mark.parametrize("strategy", ["evolution", "progressive"])
def test_a_rebuilt_search_proposes_the_same_parents(strategy: str) -> None:
    spec = make_spec(strategy, "cell")
    live = Search(spec)
    history = drive(live, 34)
    assert any(t.parents for t in history), "the records carry no lineage"
    assert [t.parents for t in history] == live.strategy.parents[: len(history)]
    rebuilt = Search(spec, history)
    assert rebuilt.strategy.parents == live.strategy.parents
    assert rebuilt.ask(0, live.asked) == live.ask(0, live.asked)  # recorded candidates, parents included
    assert rebuilt.ask(live.asked, 4) == live.ask(live.asked, 4)


def test_parents_travel_through_the_driver_the_codec_and_the_controller_protocol() -> None:
    spec = make_spec("evolution", "cell")
    driver = Driver(spec, [])
    driver.start()
    arch = Search(spec).ask(0, 1)[0].architecture
    commands = driver.handle(Proposed((Candidate(0, arch, "a"),)))
    assert [c.trial.parents for c in commands if isinstance(c, Create)] == [()]
    rec = TrialRecord(index=7, architecture=arch, name="t-00007", parents=(3,))
    wire = trial_wire(rec, "t", "a", 11)
    assert wire["spec"]["parents"] == [3]
    assert record_from_wire(wire).parents == (3,)
    candidate = Candidate(7, arch, "a", (3,))
    assert candidate_from_json(json.loads(json.dumps(candidate_to_json(candidate)))) == candidate
    assert candidate_from_json({"index": 1, "architecture": arch}).parents == ()  # an older controller


def test_a_local_run_records_lineage_in_the_journal_and_the_tables(tmp_path: Path) -> None:
    doc = experiment_dict(
        strategy={"name": "evolution", "seed": 2, "evolution": {"populationSize": 3, "sampleSize": 2}},
        budget={"maxTrials": 8, "parallelTrials": 2},
    )
    _, folder = run_locally(tmp_path, doc)
    history, _ = read_journal(folder)
    children = [t for t in history if t.parents]
    assert children and all(t.index >= 3 for t in children)
    names = {t.index: t.name for t in history}
    rows = {r["trial"]: r for r in json.loads((folder / "trials.json").read_text())}
    with (folder / "trials.csv").open() as fh:
        table = {r["trial"]: r for r in csv.DictReader(fh)}
    for t in history:
        expected = [names[p] for p in t.parents]
        assert rows[t.name]["parents"] == expected
        assert table[t.name]["parents"] == " ".join(expected)

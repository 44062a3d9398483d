"""What a search learned: importance, motifs, genotypes, pictures and the results folder."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from kubenas.api.v1alpha1 import Objective
from kubenas.core.records import TrialRecord
from kubenas.core.space import Categorical, FloatRange, SearchSpace, nb201_string
from kubenas.insights import pictures
from kubenas.insights.genotype import genotype, graph_of, longest_conv_path, parameter_free
from kubenas.insights.importance import NotEnoughTrials, importance, variance_explained
from kubenas.insights.motifs import motifs
from kubenas.local.report import leaderboard, summary, write_results

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
needs_matplotlib = pytest.mark.skipif(not pictures.available(), reason="matplotlib is not installed")


def generated_table(seed: int = 0) -> tuple[SearchSpace, list[TrialRecord]]:
    """A space where ``edge_2_1`` decides the reward, ``lr`` matters a little and the rest is noise."""
    space = SearchSpace(
        (
            Categorical("edge_1_0", OPS),
            Categorical("edge_2_0", OPS),
            Categorical("edge_2_1", OPS),
            FloatRange("lr", 0.001, 0.1, log=True),
        )
    )
    rng = np.random.default_rng(seed)
    records = []
    for i in range(120):
        arch = space.sample(rng)
        reward = 10.0 * OPS.index(str(arch["edge_2_1"])) + 1.0 * float(arch["lr"]) * 10 + rng.normal(0, 0.3)
        records.append(TrialRecord(i, arch, name=f"gen-{i:05d}", phase="Succeeded", reward=reward))
    records.append(TrialRecord(120, space.sample(rng), name="gen-00120", phase="Failed", reason="BadCandidate"))
    return space, records


@pytest.mark.parametrize("evaluator", ["ped-anova", "fanova"])
def test_importance_finds_the_decision_that_drives_the_reward(evaluator: str) -> None:
    if evaluator == "fanova" and importlib.util.find_spec("sklearn") is None:
        pytest.skip("fANOVA needs scikit-learn")
    space, records = generated_table()
    imp = importance(space, records, evaluator)  # type: ignore[arg-type]
    assert imp.evaluator == evaluator
    assert imp.trials == 120  # the failed trial has nothing to explain
    assert imp.ranking()[0] == "edge_2_1"
    assert dict(imp.scores)["edge_2_1"] > 0.5
    assert sum(dict(imp.scores).values()) == pytest.approx(1.0)
    effects = imp.effects["edge_2_1"]
    assert [e.choice for e in effects] == list(reversed(OPS))  # best choice first
    assert effects[0].shift > 15 > -15 > effects[-1].shift


def test_importance_in_json_speaks_the_metric_of_a_minimised_objective() -> None:
    space, records = generated_table()
    data = importance(space, records, "ped-anova").to_json(sign=-1.0)
    first = data["decisions"][0]
    assert first["name"] == "edge_2_1"
    assert first["choices"][0]["shift"] < 0  # the best choice lowers the minimised metric


def test_importance_refuses_a_history_too_short() -> None:
    space, records = generated_table()
    with pytest.raises(NotEnoughTrials, match="3 succeeded trials"):
        importance(space, records[:3])


def test_variance_explained_on_a_full_grid_is_exact() -> None:
    rows = [({"a": a, "b": b}, 3.0 * a + (1.0 if b else 0.0)) for a, b in itertools.product(range(2), range(2))]
    shares = variance_explained(["a", "b"], rows)
    assert shares["a"] == pytest.approx(9 / 10)
    assert shares["b"] == pytest.approx(1 / 10)


def cell(**edges: str) -> dict[str, str]:
    base = {"edge_1_0": "none", "edge_2_0": "none", "edge_2_1": "none", "edge_3_0": "none"}
    base.update({"edge_3_1": "none", "edge_3_2": "none"})
    base.update(edges)
    return base


def test_genotype_of_a_cell_is_the_nas_bench_201_string() -> None:
    arch = cell(edge_1_0="nor_conv_3x3", edge_3_1="skip_connect", edge_3_2="avg_pool_3x3")
    assert genotype(arch) == nb201_string(arch)
    g = graph_of(arch)
    assert g.nodes == ("in", "1", "2", "out")
    assert set(g.edges) == {(0, 1, "nor_conv_3x3"), (1, 3, "skip_connect"), (2, 3, "avg_pool_3x3")}


def test_genotype_of_a_chain_with_hyperparameters() -> None:
    arch = {"layer_0": "conv3x3", "layer_1": "identity", "layer_2": "conv5x5", "lr": 0.012345}
    assert genotype(arch) == "conv3x3 > identity > conv5x5  lr=0.01235"
    assert graph_of(arch).edges == ((0, 1, "conv3x3"), (1, 2, "identity"), (2, 3, "conv5x5"))


def test_longest_conv_path_follows_connections_only() -> None:
    deep = cell(edge_1_0="nor_conv_3x3", edge_2_1="nor_conv_1x1", edge_3_2="nor_conv_3x3", edge_3_0="skip_connect")
    assert longest_conv_path(deep) == 3
    cut = cell(edge_1_0="nor_conv_3x3", edge_2_1="nor_conv_3x3")  # nothing reaches the output
    assert longest_conv_path(cut) == 0
    assert longest_conv_path({"layer_0": "conv3x3", "layer_1": "max_pool3x3", "layer_2": "sep_conv3x3"}) == 2
    assert parameter_free("skip_connect") and parameter_free("avg_pool_3x3") and not parameter_free("nor_conv_1x1")


def test_motifs_show_what_the_top_architectures_share() -> None:
    _, records = generated_table()
    m = motifs(records, k=10)
    assert m is not None and m.k == 10 and m.trials == 120
    best = m.notable(1)[0]
    assert (best.decision, best.operation, best.top) == ("edge_2_1", "avg_pool_3x3", 1.0)
    assert 0.15 < best.overall < 0.25
    assert 0.0 <= m.parameter_free[0] <= 1.0
    assert motifs([r for r in records if r.phase == "Failed"]) is None


@needs_matplotlib
def test_pictures_are_rendered_and_not_blank(tmp_path: Path) -> None:
    import matplotlib.image

    space, records = generated_table()
    arch = cell(edge_1_0="nor_conv_3x3", edge_3_1="skip_connect", edge_3_2="avg_pool_3x3")
    chain = {f"layer_{i}": op for i, op in enumerate(["conv3x3", "identity", "conv5x5"] * 4)}
    paths = [
        pictures.save_architecture(tmp_path / "cell.png", arch, "a cell"),
        pictures.save_architecture(tmp_path / "chain.png", chain, "a chain"),
        pictures.save_gallery(tmp_path / "top.png", [("one", arch), ("two", cell(edge_3_0="nor_conv_1x1"))]),
        pictures.save_importance(tmp_path / "imp.png", importance(space, records, "ped-anova"), "acc"),
    ]
    for path in paths:
        assert path is not None and path.stat().st_size > 5000
        pixels = matplotlib.image.imread(path)[..., :3]
        assert (pixels < 0.5).mean() > 0.002  # ink on the page, not an empty canvas


def test_results_folder_holds_what_the_search_learned(tmp_path: Path) -> None:
    space, records = generated_table()
    objective = Objective(metric="acc")
    summ = summary("gen", objective, records, "Succeeded", "MaxTrialsReached")
    write_results(tmp_path, summ, objective, records, space)
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["importance"]["decisions"][0]["name"] == "edge_2_1"
    assert data["motifs"]["top_k"] == 5
    assert data["best"]["genotype"].startswith("|")
    assert (tmp_path / "motifs.csv").read_text().startswith("decision,operation,top_5_share,all_share")
    if pictures.available():
        assert {"importance.png", "best.png", "top.png"} <= {p.name for p in tmp_path.iterdir()}


def test_leaderboard_says_when_nothing_succeeded() -> None:
    console = Console(record=True, width=120)
    failed = [TrialRecord(0, cell(), name="x-00000", phase="Failed", reason="BadCandidate")]
    leaderboard(console, Objective(), failed)
    text = console.export_text()
    assert "No trial succeeded" in text and "architecture ()" not in text


def test_leaderboard_names_the_parent_a_leader_was_bred_from() -> None:
    trials = [
        TrialRecord(0, cell(), name="x-00000", phase="Succeeded", reward=0.5),
        TrialRecord(1, cell(), name="x-00001", phase="Succeeded", reward=0.9, parents=(0,)),
    ]
    console = Console(record=True, width=160)
    leaderboard(console, Objective(), trials)
    text = console.export_text()
    assert "parent" in text
    row = next(line for line in text.splitlines() if "x-00001" in line)
    assert "x-00000" in row  # the parent by name, on the child's row
    console = Console(record=True, width=160)
    leaderboard(console, Objective(), trials[:1])  # nothing bred: no parent column
    assert "parent" not in console.export_text()


def test_epochs_are_read_from_the_trainer_progress_lines() -> None:
    from kubenas.insights.cluster import epochs

    log = "\n".join(
        [
            "loading data",
            json.dumps({"event": "epoch", "epoch": 1, "metrics": {"val_accuracy": 0.5}}),
            "{not json",
            json.dumps({"event": "start"}),
            json.dumps({"event": "epoch", "epoch": 2, "metrics": {"val_accuracy": 0.7}}),
        ]
    )
    assert [(e["epoch"], e["metrics"]["val_accuracy"]) for e in epochs(log)] == [(1, 0.5), (2, 0.7)]


def test_status_view_shows_progress_budget_leaderboard_and_what_matters() -> None:
    from datetime import UTC, datetime

    from kubenas.api.v1alpha1 import SearchExperiment
    from kubenas.insights.cluster import Snapshot, status_view

    _, records = generated_table()
    exp = SearchExperiment.model_validate(
        {
            "metadata": {"name": "gen"},
            "spec": {
                "searchSpace": {
                    "cell": {"nodes": 3, "operations": list(OPS)},
                    "hyperparameters": [{"name": "lr", "type": "float", "low": 0.001, "high": 0.1, "log": True}],
                },
                "strategy": {"name": "random"},
                "objective": {"metric": "acc"},
                "budget": {"maxTrials": 200, "parallelTrials": 4, "maxFailedTrials": 5},
                "trialTemplate": {"command": ["train"]},
            },
        }
    )
    status = {
        "phase": "Running",
        "conditions": [{"type": "Running", "status": "True", "reason": "Running"}],
        "bestTrial": {"name": "gen-00007", "architecture": records[7].architecture},
    }
    console = Console(record=True, width=200)
    console.print(status_view(Snapshot(exp, status, tuple(records), datetime.now(UTC)), top=3))
    text = console.export_text()
    assert "121/200 trials" in text and "succeeded 120, failed 1/5 allowed" in text
    assert "Leaderboard (acc, maximize)" in text and genotype(records[7].architecture) in text
    assert "What explains acc (ped-anova, 120 trials)" in text
    assert "Motifs of the top 3 of 120" in text
    assert "one-shot" not in text

    status["oneShot"] = {
        "phase": "Search",
        "supernet": {"attempts": 1, "succeeded": True, "failed": False},
        "evaluations": {"told": 12, "succeeded": 11, "failed": 1, "target": 60},
        "bestScore": 0.8125,
        "top": [{"evaluation": "gen-eval-00003", "architecture": {}, "score": 0.8125}] * 3,
        "parameterFree": 0.5,
    }
    console = Console(record=True, width=240)
    console.print(status_view(Snapshot(exp, status, tuple(records), datetime.now(UTC)), top=3))
    assert (
        "one-shot phase Search: supernet trained, 12/60 candidates scored on it (1 failed), best one-shot acc 0.8125,"
        " top 3 parameter-free edges 50%" in console.export_text()
    )

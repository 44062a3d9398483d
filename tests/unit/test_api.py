"""API models: bad manifests are refused with the field path, good ones (the examples) validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubenas.api.settings import MAX_SETTINGS_KEYS, MAX_SETTINGS_WEIGHT
from kubenas.api.v1alpha1 import parse_duration
from kubenas.load import ManifestError, load_experiment, parse_experiment
from tests.conftest import REPO, experiment_dict


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_validates(path: Path) -> None:
    exp = load_experiment(path)
    assert exp.spec.budget.max_trials >= 1


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        (
            {"budget": {"maxTrials": 2, "parallelTrials": 5}},
            "spec.budget.parallelTrials",
            "parallelTrials must not exceed",
        ),
        ({"budget": {"maxTrials": 0}}, "spec.budget.maxTrials", "greater than or equal to 1"),
        ({"budget": {"maxTrials": 5, "maxTrails": 1}}, "spec.budget.maxTrails", "unknown field"),
        ({"strategy": {"name": "evolution", "tpe": {}}}, "spec.strategy.tpe", "settings for 'tpe'"),
        ({"strategy": {"name": "annealing"}}, "spec.strategy.name", "Input should be"),
        (
            {"strategy": {"name": "evolution", "evolution": {"populationSize": 1}}},
            "spec.strategy.evolution.populationSize",
            "",
        ),
        ({"searchSpace": {}}, "spec.searchSpace", "at least one of cell"),
        ({"searchSpace": {"cell": {"nodes": 12}}}, "spec.searchSpace.cell.nodes", "less than or equal to 8"),
        (
            {"searchSpace": {"hyperparameters": [{"name": "lr", "type": "float", "low": 1, "high": 0.1}]}},
            "spec.searchSpace.hyperparameters[0].low",
            "low must be less than high",
        ),
        (
            {"searchSpace": {"hyperparameters": [{"name": "lr", "type": "float", "low": 0, "high": 1, "log": True}]}},
            "spec.searchSpace.hyperparameters[0].low",
            "log-scaled",
        ),
        (
            {"searchSpace": {"hyperparameters": [{"name": "a", "type": "categorical", "choices": ["x", "x"]}]}},
            "spec.searchSpace.hyperparameters[0].choices",
            "distinct",
        ),
        ({"budget": {"maxTrials": 5, "maxDuration": "ten minutes"}}, "spec.budget.maxDuration", "pattern"),
        ({"budget": {"maxTrials": 5, "maxDuration": "30m1h"}}, "spec.budget.maxDuration", "pattern"),
        ({"budget": {"maxTrials": 5, "maxDuration": "0s"}}, "spec.budget.maxDuration", "above 0s"),
        ({"budget": {"maxTrials": 5, "maxDuration": "87601h"}}, "spec.budget.maxDuration", "at most 87600h"),
        ({"trialTemplate": {"command": []}}, "spec.trialTemplate.command", "at least 1"),
        (
            {"objective": {"metric": "acc", "constraints": [{"metric": "params"}]}},
            "spec.objective.constraints[0].max",
            "max or min",
        ),
        (
            {"trialTemplate": {"command": ["x"], "settings": {"blob": "x" * MAX_SETTINGS_WEIGHT}}},
            "spec.trialTemplate.settings",
            "settings weigh at least",
        ),
        (
            {"trialTemplate": {"command": ["x"], "settings": {f"k{i}": i for i in range(MAX_SETTINGS_KEYS + 1)}}},
            "spec.trialTemplate.settings",
            "at most 64",
        ),
        (
            {
                "searchSpace": {"cell": {"nodes": 3}},
                "oneShot": {"supernetSettings": {"layers": [["x" * 100] * 100] * 7}},
            },
            "spec.oneShot.supernetSettings",
            "settings weigh at least",
        ),
    ],
)
def test_bad_manifest_is_refused_with_the_field_path(overrides: dict, field: str, words: str) -> None:
    with pytest.raises(ManifestError) as err:
        parse_experiment(experiment_dict(**overrides))
    fields = [f for f, _ in err.value.problems]
    assert field in fields, err.value
    assert any(words in m for f, m in err.value.problems if f == field), err.value


def test_missing_file_and_bad_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file"):
        load_experiment(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_experiment(bad)


def test_a_small_population_alone_takes_a_tournament_that_fits() -> None:
    """sampleSize left out is 10, or the population when smaller: populationSize 5 alone is accepted."""
    small = parse_experiment(experiment_dict(strategy={"name": "evolution", "evolution": {"populationSize": 5}}))
    assert small.spec.strategy.settings().sample_size == 5
    large = parse_experiment(experiment_dict(strategy={"name": "evolution", "evolution": {"populationSize": 50}}))
    assert large.spec.strategy.settings().sample_size == 10
    with pytest.raises(ManifestError, match="sampleSize"):
        parse_experiment(
            experiment_dict(strategy={"name": "evolution", "evolution": {"populationSize": 5, "sampleSize": 6}})
        )


def test_validate_checks_listed_architectures_against_the_space() -> None:
    """A retrain's or a seedFrom's architectures are checked when the manifest is read, with their paths."""
    space = {"hyperparameters": [{"name": "a", "type": "categorical", "choices": ["x", "y"]}]}
    retrain = {"name": "retrain", "retrain": {"architectures": [{"architecture": {"a": "x"}}, {"architecture": {}}]}}
    with pytest.raises(ManifestError) as err:
        parse_experiment(experiment_dict(searchSpace=space, strategy=retrain))
    assert [f for f, _ in err.value.problems] == ["spec.strategy.retrain.architectures[1].architecture.a"]
    seeded = {"name": "evolution", "seedFrom": {"experiment": "src", "architectures": [{"architecture": {"a": "z"}}]}}
    with pytest.raises(ManifestError) as err:
        parse_experiment(experiment_dict(searchSpace=space, strategy=seeded))
    assert [f for f, _ in err.value.problems] == ["spec.strategy.seedFrom.architectures[0].architecture.a"]


def test_strategy_settings_default_when_omitted() -> None:
    exp = parse_experiment(experiment_dict(strategy={"name": "evolution"}))
    assert exp.spec.strategy.settings().population_size >= 2


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("1h30m", 5400), ("2.5h", 9000), ("250ms", 0.25), ("1h2m3s4ms", 3723.004)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)

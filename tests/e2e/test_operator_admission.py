"""Malformed SearchExperiments are refused by the API server itself, with the path of the bad field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from kubenas_dev.operator_fixtures import crds, kube
from kubenas_dev.operator_testing import Kube, experiment_manifest

__all__ = ["crds", "kube"]


def apply(cluster: Any, namespace: str, manifest: dict[str, Any]) -> Any:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False)


def edited(path: str, value: Any) -> dict[str, Any]:
    manifest = experiment_manifest("bad")
    node = manifest
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return manifest


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("spec.budget.parallelTrials", 50, "spec.budget.parallelTrials"),
        ("spec.budget.maxTrials", 0, "spec.budget.maxTrials"),
        ("spec.budget.maxFailedTrials", 99, "spec.budget.maxFailedTrials"),
        ("spec.strategy.name", "hillclimb", "spec.strategy.name"),
        ("spec.strategy.reinforce", {"hiddenSize": 32}, "spec.strategy.reinforce"),
        ("spec.searchSpace.cell.nodes", 40, "spec.searchSpace.cell.nodes"),
        ("spec.trialTemplate.command", None, "spec.trialTemplate.command"),
        ("spec.objective.direction", "sideways", "spec.objective.direction"),
        ("spec.budget.maxDuration", "forever", "spec.budget.maxDuration"),
    ],
)
def test_a_malformed_experiment_is_refused_with_the_field_path(
    cluster: Any, namespace: str, crds: None, path: str, value: Any, expected: str
) -> None:
    result = apply(cluster, namespace, edited(path, value))
    assert result.returncode != 0, result.stdout
    assert expected in result.stderr, result.stderr


def test_a_name_too_long_for_its_children_is_refused(cluster: Any, namespace: str, crds: None) -> None:
    manifest = experiment_manifest("x" * 60)
    result = apply(cluster, namespace, manifest)
    assert result.returncode != 0 and "name" in result.stderr


def test_only_budget_growth_may_change_after_creation(cluster: Any, namespace: str, kube: Kube) -> None:
    manifest = experiment_manifest("fixed", max_trials=5)
    assert apply(cluster, namespace, manifest).returncode == 0

    other_seed = copy.deepcopy(manifest)
    other_seed["spec"]["strategy"]["seed"] = 99
    refused = apply(cluster, namespace, other_seed)
    assert refused.returncode != 0 and "spec.strategy" in refused.stderr, refused.stderr

    fewer = copy.deepcopy(manifest)
    fewer["spec"]["budget"]["maxTrials"] = 3
    refused = apply(cluster, namespace, fewer)
    assert refused.returncode != 0 and "spec.budget.maxTrials" in refused.stderr, refused.stderr

    more = copy.deepcopy(manifest)
    more["spec"]["budget"].update(maxTrials=8, parallelTrials=4)
    accepted = apply(cluster, namespace, more)
    assert accepted.returncode == 0, accepted.stderr
    assert kube.experiment("fixed")["spec"]["budget"]["maxTrials"] == 8  # type: ignore[index]

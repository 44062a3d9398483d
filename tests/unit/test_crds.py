"""The CRDs in crds/ are generated from the models: drift fails, and the schema is structural."""

from __future__ import annotations

from typing import Any

import yaml

from kubenas.api import crd
from tests.conftest import REPO


def test_committed_crds_match_the_models() -> None:
    for name, obj in crd.crds().items():
        path = REPO / "crds" / name
        assert path.exists(), f"{path} is missing: run `kubenas crds generate`"
        assert path.read_text() == crd.render(obj), f"{name} drifted from the models: run `kubenas crds generate`"


def _walk(node: dict[str, Any], path: str, problems: list[str]) -> None:
    untyped_ok = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    if "type" not in node and not untyped_ok:
        problems.append(f"{path}: no type")
    for bad in ("$ref", "anyOf", "oneOf", "allOf", "title", "const"):
        if bad in node:
            problems.append(f"{path}: {bad}")
    if node.get("type") == "object" and "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties together")
    if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(node.get("exclusiveMinimum"), bool):
        problems.append(f"{path}: numeric exclusiveMinimum")
    described = path.startswith(("spec", "status")) and not path.endswith(("[]", "{}"))
    if described and "description" not in node:
        problems.append(f"{path}: no description")
    for k, v in node.get("properties", {}).items():
        _walk(v, f"{path}.{k}", problems)
    if isinstance(node.get("items"), dict):
        _walk(node["items"], f"{path}[]", problems)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], f"{path}{{}}", problems)


def test_schemas_are_structural_and_described() -> None:
    problems: list[str] = []
    for name, obj in crd.crds().items():
        schema = obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for part in ("spec", "status"):
            _walk(schema["properties"][part], f"{part}@{name}", problems)
    assert problems == []


def test_experiment_crd_carries_cel_rules_status_and_columns() -> None:
    obj = yaml.safe_load((REPO / "crds" / "kubenas.io_searchexperiments.yaml").read_text())
    version = obj["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert {c["name"] for c in version["additionalPrinterColumns"]} >= {"Phase", "Best", "Trials", "Age"}
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    budget_rules = [r["rule"] for r in spec["properties"]["budget"]["x-kubernetes-validations"]]
    assert "!has(self.parallelTrials) || self.parallelTrials <= self.maxTrials" in budget_rules
    strategy_rules = [r["rule"] for r in spec["properties"]["strategy"]["x-kubernetes-validations"]]
    assert "!has(self.tpe) || self.name == 'tpe'" in strategy_rules
    assert spec["properties"]["searchSpace"]["x-kubernetes-validations"][-1]["rule"] == "self == oldSelf"
    hp = spec["properties"]["searchSpace"]["properties"]["hyperparameters"]
    assert hp["x-kubernetes-list-type"] == "map" and hp["x-kubernetes-list-map-keys"] == ["name"]
    assert obj["spec"]["names"]["shortNames"] and obj["spec"]["names"]["categories"] == ["kubenas"]

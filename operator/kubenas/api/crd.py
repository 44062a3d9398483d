"""Generate the CustomResourceDefinitions in crds/ from the pydantic models.

Pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3 schema. The
conversion inlines ``$ref``s, turns ``Optional[X]`` into ``X`` (absent fields are simply omitted),
maps JSON Schema's numeric ``exclusiveMinimum`` to OpenAPI's boolean form, marks free-form maps and
mixed-type values with ``x-kubernetes-preserve-unknown-fields`` / ``x-kubernetes-int-or-string``, and
keeps every description, bound, enum, pattern and CEL rule. ``kubenas crds generate`` writes the
files; ``tests/unit/test_crds.py`` fails when they drift from the models.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from kubenas.api.base import ApiModel
from kubenas.api.template import VERBATIM
from kubenas.api.v1alpha1 import GROUP, VERSION, SearchExperiment, Trial

HEADER = (
    "# Generated from the pydantic models in operator/kubenas/api by `kubenas crds generate`.\n"
    "# Do not edit by hand: change the models and regenerate (a test fails on drift).\n"
)

_DROP = {"title", "additionalProperties", "$defs", "default"}
_NUMERIC = {"integer", "number"}
_SCALARS = {"string", "integer", "number"}


#: what an int-or-string keeps of its variants' bounds (each applies only to values of its own type)
_VARIANT_BOUNDS = ("pattern", "minLength", "maxLength", "minimum", "maximum")


class _Converter:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs

    def convert(self, node: dict[str, Any]) -> dict[str, Any]:
        node = dict(node)
        if node.pop(VERBATIM, False):  # already structural (the upstream PodSpec): copied as it is
            return {k: v for k, v in node.items() if k != "title"}
        rules: list[dict[str, str]] = list(node.pop("x-kubernetes-validations", []))
        if "$ref" in node:
            name = node.pop("$ref").rsplit("/", 1)[-1]
            target = self.convert(self.defs[name])
            rules = list(target.pop("x-kubernetes-validations", [])) + rules
            siblings = {k: v for k, v in node.items() if k not in _DROP}
            node = {**target, **siblings}
        elif "anyOf" in node:
            variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
            if len(variants) == 1:
                inner = self.convert(variants[0])
                rules = list(inner.pop("x-kubernetes-validations", [])) + rules
                node = {**inner, **{k: v for k, v in node.items() if k not in _DROP}}
            else:
                types = {v.get("type") for v in variants}
                base = {k: v for k, v in node.items() if k not in _DROP}
                if types == {"integer", "string"}:
                    bounds = {k: v[k] for v in variants for k in _VARIANT_BOUNDS if k in v}
                    node = {**base, **bounds, "x-kubernetes-int-or-string": True}
                else:
                    node = {**base, "x-kubernetes-preserve-unknown-fields": True}
        else:
            node = self._convert_plain(node)
        out = {k: v for k, v in node.items() if k not in _DROP}
        if isinstance(node.get("additionalProperties"), dict):  # a typed map; only `false` is dropped
            out["additionalProperties"] = node["additionalProperties"]
        default = node.get("default")
        if default is not None and not isinstance(default, (dict, list)):
            out["default"] = default
        if rules:
            out["x-kubernetes-validations"] = rules
        return out

    def _convert_plain(self, node: dict[str, Any]) -> dict[str, Any]:
        kind = node.get("type")
        if "const" in node:
            node["enum"] = [node.pop("const")]
            node.setdefault("type", "string")
        if kind == "object":
            props = node.get("properties")
            if props is not None:
                node["properties"] = {k: self.convert(v) for k, v in props.items()}
            else:
                extra = node.get("additionalProperties")
                typed = isinstance(extra, dict) and (extra.get("type") in _SCALARS or "anyOf" in extra)
                if typed:
                    return {**node, "additionalProperties": self.convert(extra)}
                node.pop("additionalProperties", None)
                node["x-kubernetes-preserve-unknown-fields"] = True
        elif kind == "array":
            node["items"] = self.convert(node.get("items", {}))
        elif kind in _NUMERIC:
            for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
                if bound in node and not isinstance(node[bound], bool):
                    node[plain] = node.pop(bound)
                    node[bound] = True
        elif kind is None and not node:
            return {"x-kubernetes-preserve-unknown-fields": True}
        if node.get("format") == "date-time":
            node["type"] = "string"
        return node


def openapi_schema(model: type[ApiModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a resource model (metadata left to the API server)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema = _Converter(raw.get("$defs", {})).convert(raw)
    # metadata is the API server's; naming metadata.name lets a rule report it as its fieldPath
    schema["properties"]["metadata"] = {"type": "object", "properties": {"name": {"type": "string"}}}
    schema["properties"]["apiVersion"] = {
        "type": "string",
        "description": raw["properties"]["apiVersion"].get("description", ""),
    }
    schema["properties"]["kind"] = {"type": "string", "description": raw["properties"]["kind"].get("description", "")}
    schema["required"] = ["spec"]
    return schema


def _crd(
    model: type[ApiModel],
    kind: str,
    plural: str,
    short_names: list[str],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    schema = openapi_schema(model)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["kubenas"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def _col(name: str, type_: str, path: str, description: str, priority: int = 0) -> dict[str, Any]:
    col = {"name": name, "type": type_, "jsonPath": path, "description": description}
    if priority:
        col["priority"] = priority
    return col


def crds() -> dict[str, dict[str, Any]]:
    """File name → CRD object, for every kind Kubenas serves."""
    age = _col("Age", "date", ".metadata.creationTimestamp", "Time since creation")
    experiment = _crd(
        SearchExperiment,
        "SearchExperiment",
        "searchexperiments",
        ["sx", "nas"],
        [
            _col("Phase", "string", ".status.phase", "Pending, Running, Succeeded or Failed"),
            _col("Best", "number", ".status.bestReward", "Best objective value so far"),
            _col("Trials", "string", ".status.progress", "Trials finished / maxTrials"),
            _col("Strategy", "string", ".spec.strategy.name", "Search strategy"),
            _col(
                "OneShot", "string", ".status.oneShot.phase", "A one-shot search's phase: Supernet, Search, Retrain", 1
            ),
            _col("Reason", "string", '.status.conditions[?(@.type=="Running")].reason', "Running, or why it ended", 1),
            age,
        ],
    )
    trial = _crd(
        Trial,
        "Trial",
        "trials",
        ["tr"],
        [
            _col("Experiment", "string", ".spec.experiment", "Owning experiment"),
            _col("Phase", "string", ".status.phase", "Pending, Running, Succeeded, Failed or Infeasible"),
            _col("Reward", "number", ".status.reward", "Reward told to the strategy"),
            _col("Reason", "string", ".status.reason", "Why it is in its phase", 1),
            _col("Architecture", "string", ".spec.architectureId", "Canonical architecture", 1),
            age,
        ],
    )
    return {f"{GROUP}_searchexperiments.yaml": experiment, f"{GROUP}_trials.yaml": trial}


def render(obj: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(copy.deepcopy(obj), sort_keys=False, width=120)


def write(directory: Path) -> list[Path]:
    """Write every CRD into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, obj in crds().items():
        path = directory / name
        path.write_text(render(obj))
        paths.append(path)
    return paths

"""Kubernetes' core/v1 PodSpec as a structural schema: shipped with the package, checked the same way twice.

The trial template embeds a real PodSpec (volumes, affinity, security settings...), so the CRD
carries the PodSpec's real schema, as Jobs do, and ``kubenas validate`` refuses what the API server
would refuse (an unknown field, a string where an integer belongs). Nothing is downloaded at run
time: ``podspec.json`` next to this module is a trimmed copy of the upstream OpenAPI v3 document
(``api/openapi-spec/v3/api__v1_openapi.json`` of the Kubernetes release the tests run against),
made by :func:`trim` and regenerated with ``python3 -m kubenas.api.podspec UPSTREAM.json``.

Trimmed means: ``$ref``s inlined, descriptions cut to their first sentence, Go zero-value defaults
dropped (only the defaults of list-map keys stay, which the API server needs), the patch-strategy
annotations dropped, ``ephemeralContainers`` dropped (a pod cannot be created with them) and an
embedded ObjectMeta (an ephemeral volume's claim template) reduced to labels and annotations.
``x-kubernetes-preserve-unknown-fields`` appears only where upstream leaves an object free-form.
"""

from __future__ import annotations

import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("podspec.json")
ROOT = "io.k8s.api.core.v1.PodSpec"
QUANTITY_REF = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING_REF = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
OBJECT_META_REF = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
#: the grammar of a resource quantity, as controller-gen writes it into CRDs
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_KEEP = ("type", "format", "enum", "required", "x-kubernetes-list-type", "x-kubernetes-map-type")
_DROPPED_PROPERTIES = {ROOT: {"ephemeralContainers"}}
_SENTENCE = re.compile(r"^(.+?\.)(\s|$)", re.DOTALL)


def _first_sentence(text: str) -> str:
    found = _SENTENCE.match(text.strip())
    return (found.group(1) if found else text.strip()).replace("\n", " ")


class _Trimmer:
    def __init__(self, schemas: dict[str, Any]) -> None:
        self.schemas = schemas

    def named(self, name: str, description: str | None = None) -> dict[str, Any]:
        if name == QUANTITY_REF:
            out: dict[str, Any] = {"pattern": QUANTITY_PATTERN, "x-kubernetes-int-or-string": True}
        elif name == INT_OR_STRING_REF:
            out = {"x-kubernetes-int-or-string": True}
        elif name == OBJECT_META_REF:
            strings = {"type": "object", "additionalProperties": {"type": "string"}}
            out = {
                "type": "object",
                "properties": {
                    "labels": {**strings, "description": "Labels of the object."},
                    "annotations": {**strings, "description": "Annotations of the object."},
                },
            }
        else:
            out = self.node(self.schemas[name], drop=_DROPPED_PROPERTIES.get(name, set()))
            description = description or self.schemas[name].get("description")
        if description:
            out["description"] = _first_sentence(description)
        return out

    def node(self, node: dict[str, Any], drop: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
        ref = node.get("$ref") or next((a["$ref"] for a in node.get("allOf", []) if "$ref" in a), None)
        if ref:
            return self.named(ref.rsplit("/", 1)[-1], node.get("description"))
        out: dict[str, Any] = {k: node[k] for k in _KEEP if k in node}
        if node.get("description"):
            out["description"] = _first_sentence(node["description"])
        keys = node.get("x-kubernetes-list-map-keys")
        if keys:
            out["x-kubernetes-list-map-keys"] = keys
        if "properties" in node:
            out["properties"] = {k: self.node(v) for k, v in node["properties"].items() if k not in drop}
            out["type"] = "object"
        if "items" in node:
            out["items"] = self.node(node["items"])
            if keys:  # the API server wants every map key required or defaulted: keep upstream's defaults
                for key in keys:
                    prop = self._item_property(node["items"], key)
                    default = prop.get("default") if prop else None
                    required = key in out["items"].get("required", [])
                    if default is not None and not required and key in out["items"].get("properties", {}):
                        out["items"]["properties"][key]["default"] = default
        if "additionalProperties" in node:
            out["additionalProperties"] = self.node(node["additionalProperties"])
        if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
            out["x-kubernetes-preserve-unknown-fields"] = True  # upstream leaves it free-form
        return out

    def _item_property(self, items: dict[str, Any], key: str) -> dict[str, Any] | None:
        ref = items.get("$ref") or next((a["$ref"] for a in items.get("allOf", []) if "$ref" in a), None)
        target = self.schemas[ref.rsplit("/", 1)[-1]] if ref else items
        prop: dict[str, Any] | None = target.get("properties", {}).get(key)
        return prop


def trim(upstream: dict[str, Any]) -> dict[str, Any]:
    """The structural schema of a PodSpec from an upstream ``api__v1_openapi.json`` document."""
    return _Trimmer(upstream["components"]["schemas"]).named(ROOT)


@cache
def schema() -> dict[str, Any]:
    """The shipped PodSpec schema (structural OpenAPI v3, as the CRD carries it)."""
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return loaded


# -- the same schema checked in Python -------------------------------------------------------------
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def problems(node: dict[str, Any], value: Any, path: str = "") -> list[tuple[str, str]]:
    """What the API server's structural checks would refuse in ``value``: ``(path, message)`` pairs.

    Types (an integer is not a boolean, ``"10"`` is not 10), unknown fields (strict field
    validation), required fields, enums, int-or-string values and the quantity grammar. Bounds the
    upstream schema does not state are the API server's Pod validation, which runs when the Job
    creates the pod; the trial contract's own rules are in ``kubenas.api.template``.
    """
    if node.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return [(path, "must be an integer or a string")]
        if isinstance(value, str) and "pattern" in node and not re.search(node["pattern"], value):
            return [(path, f"{value!r} is not a quantity (e.g. 500m, 2, 1Gi)")]
        return []
    kind = node.get("type")
    if kind and (not isinstance(value, _PY_TYPES[kind]) or (kind != "boolean" and isinstance(value, bool))):
        return [(path, f"must be of type {kind}")]
    if "enum" in node and value not in node["enum"]:
        return [(path, f"must be one of {', '.join(map(str, node['enum']))}")]
    found: list[tuple[str, str]] = []
    if kind == "array":
        for i, item in enumerate(value):
            found += problems(node.get("items", {}), item, f"{path}[{i}]")
    elif kind == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
        props = node.get("properties")
        for key, item in value.items():
            sub = f"{path}.{key}"
            if props is not None and key not in props:
                found.append((sub, "unknown field"))
            elif props is not None:
                found += problems(props[key], item, sub)
            elif isinstance(node.get("additionalProperties"), dict):
                found += problems(node["additionalProperties"], item, sub)
        found += [(f"{path}.{k}", "required") for k in node.get("required", []) if k not in value]
    return found


def main(argv: list[str]) -> int:
    """``python3 -m kubenas.api.podspec UPSTREAM.json``: rewrite the shipped schema from an upstream document."""
    if len(argv) != 1:
        print("usage: python3 -m kubenas.api.podspec api__v1_openapi.json", file=sys.stderr)
        return 2
    trimmed = trim(json.loads(Path(argv[0]).read_text()))
    SCHEMA_FILE.write_text(json.dumps(trimmed, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SCHEMA_FILE.name}: {SCHEMA_FILE.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Shared base of the API models: camelCase on the wire, unknown fields refused."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

_BASE_CONFIG = ConfigDict(
    alias_generator=to_camel,
    populate_by_name=True,
    extra="forbid",
    validate_default=True,
)


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One CEL ``x-kubernetes-validations`` entry for the generated CRD."""
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


def with_rules(*rules: dict[str, str]) -> ConfigDict:
    """Model config carrying CEL rules, so the CRD enforces at admission what pydantic enforces locally."""
    return ConfigDict(**_BASE_CONFIG, json_schema_extra={"x-kubernetes-validations": list(rules)})


def immutable(what: str) -> dict[str, Any]:
    """Field schema extra: a CEL transition rule refusing any change after creation."""
    return {"x-kubernetes-validations": [cel("self == oldSelf", f"{what} cannot change once the experiment exists")]}


def keyed_list(key: str = "name") -> dict[str, Any]:
    """Field schema extra: a list whose items are unique by ``key`` (the API server enforces it)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]}


SET_LIST: dict[str, Any] = {"x-kubernetes-list-type": "set"}


class ApiModel(BaseModel):
    """Every API object: camelCase JSON names, snake_case attributes, and no silent typos.

    ``extra="forbid"`` makes a misspelt field an error that names it, mirroring the API server's
    strict field validation, so local mode refuses what ``kubectl apply`` would refuse.
    """

    model_config = _BASE_CONFIG

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict as Kubernetes stores it: camelCase, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

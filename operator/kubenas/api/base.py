"""Shared base of the API models: camelCase on the wire, unknown fields refused, rules written once.

A rule the OpenAPI schema cannot say (one field against another, a name derived from another) is a
:class:`Rule`: its CEL expression, for the API server, and its Python check, for ``kubenas validate``
and local mode, sit side by side in the model that owns them. The CRD generator writes the CEL into
``x-kubernetes-validations`` and :class:`ApiModel` runs the Python checks, so the two cannot drift
apart unnoticed: the admission corpus (tests/admission) runs every manifest through both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

#: pydantic error type of a failed :class:`Rule`; its ``ctx["field"]`` is the path below the model.
RULE_ERROR = "kubenas_rule"
#: validation context key: check as the API server would (rules marked ``kubernetes_only`` included).
KUBERNETES = "kubernetes"


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One CEL ``x-kubernetes-validations`` entry for the generated CRD."""
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


@dataclass(frozen=True)
class Rule:
    """One cross-field rule, written twice side by side: in CEL for admission and in Python locally.

    ``check`` returns True when the model satisfies the rule; None marks a transition rule (it reads
    ``oldSelf``, so only the API server can check it on update). ``field`` is the path of the field at
    fault, relative to the model (``.low``, ``.requests``), reported by both sides. A
    ``kubernetes_only`` rule holds on the cluster but not in local mode (a trainer image, say).
    CEL must guard every defaulted or optional field with ``has()``: a rule that fails with "no such
    key" tells the user nothing.
    """

    cel: str
    message: str
    check: Callable[[Any], bool] | None
    field: str | None = None
    kubernetes_only: bool = False

    def entry(self) -> dict[str, str]:
        out = cel(self.cel, self.message, self.field)
        out["reason"] = "FieldValueInvalid"
        return out


def _schema_extra(schema: dict[str, Any], cls: type) -> None:
    """JSON schema hook: a model's :class:`Rule`s and plain CEL rules become its x-kubernetes-validations."""
    entries = [r.entry() for r in getattr(cls, "RULES", ())] + list(getattr(cls, "CEL", ()))
    if entries:
        schema["x-kubernetes-validations"] = entries


_BASE_CONFIG = ConfigDict(
    alias_generator=to_camel,
    populate_by_name=True,
    extra="forbid",
    validate_default=True,
    json_schema_extra=_schema_extra,
)


def with_rules(*rules: dict[str, str]) -> ConfigDict:
    """Model config carrying CEL-only rules (transition rules, or rules whose Python check lives elsewhere)."""

    def extra(schema: dict[str, Any], cls: type) -> None:
        _schema_extra(schema, cls)
        schema.setdefault("x-kubernetes-validations", []).extend(rules)

    return ConfigDict(**{**_BASE_CONFIG, "json_schema_extra": extra})


def immutable(what: str) -> dict[str, Any]:
    """Field schema extra: a CEL transition rule refusing any change after creation."""
    return {"x-kubernetes-validations": [cel("self == oldSelf", f"{what} cannot change once the experiment exists")]}


def no_server_default(schema: dict[str, Any]) -> None:
    """Field schema hook: no default in the CRD, so the API server leaves the field out when the user
    does and a rule can tell "not given" from "given" (the model fills the value in itself)."""
    schema.pop("default", None)


def keyed_list(key: str = "name") -> dict[str, Any]:
    """Field schema extra: a list whose items are unique by ``key`` (the API server enforces it)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]}


SET_LIST: dict[str, Any] = {"x-kubernetes-list-type": "set"}


class ApiModel(BaseModel):
    """Every API object: camelCase JSON names, snake_case attributes, and no silent typos.

    ``extra="forbid"`` makes a misspelt field an error that names it, mirroring the API server's
    strict field validation, so local mode refuses what ``kubectl apply`` would refuse. ``RULES``
    holds the model's cross-field :class:`Rule`s.
    """

    model_config = _BASE_CONFIG
    RULES: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _rules_hold(self, info: ValidationInfo) -> ApiModel:
        on_kubernetes = bool(info.context and info.context.get(KUBERNETES))
        for rule in type(self).RULES:
            if rule.check is None or (rule.kubernetes_only and not on_kubernetes):
                continue
            if not rule.check(self):
                raise PydanticCustomError(RULE_ERROR, "{message}", {"message": rule.message, "field": rule.field or ""})
        return self

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict as Kubernetes stores it: camelCase, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

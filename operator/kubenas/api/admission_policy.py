"""The ValidatingAdmissionPolicy that bounds trainer settings inside the API server, no webhook needed.

CRD rules cannot see inside ``x-kubernetes-preserve-unknown-fields`` values, so the settings' weight
and depth (``kubenas.api.settings``) are checked by a ValidatingAdmissionPolicy, where ``object`` is
plain untyped data that CEL can walk. The CEL here is written from the same constants as the
model's Python check, level by level as :func:`kubenas.api.settings.weigh` does, and says the same
words after the field's path, so ``kubenas validate`` and the API server agree on verdict, path and
message.

CEL has no recursion and (at the API server's compatibility level for new expressions, Kubernetes
1.31 on a 1.32 server) no list flattening, so the nodes of level *d* are reached through *d* nested
``map`` macros; each level's count and weight is a variable of its own, evaluated lazily, and each
is reached only while the running total is within the limit. A level is counted (``size()`` of the
containers above it, cheap) before it is weighed, so the server never walks more than the limit's
worth of nodes however large the manifest: every expression stays far inside the per-expression
cost limit (1,000,000) whatever the object.

Updates are checked only when they change the spec: an object stored before the policy existed can
still have its finalizers removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubenas.api.settings import MAX_SETTINGS_DEPTH, MAX_SETTINGS_WEIGHT, NODE_WEIGHT, deep_message, heavy_message
from kubenas.api.v1alpha1 import GROUP

#: the default name of the policy and its binding (the chart names them after its release)
POLICY_NAME = f"settings.{GROUP}"
#: the weight placeholder in the heavy message, replaced by the CEL that renders the weight
_MARK = -1


@dataclass(frozen=True)
class SettingsField:
    """One settings field the policy walks: its path from ``object`` and its variable prefix."""

    path: tuple[str, ...]
    prefix: str

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


FIELDS = (
    SettingsField(("spec", "trialTemplate", "settings"), "trial"),
    SettingsField(("spec", "oneShot", "supernetSettings"), "supernet"),
)


def _root(field: SettingsField) -> str:
    """The field's value, or ``{}`` when it (or an object above it) is absent."""
    steps = ["object." + ".".join(field.path[: i + 1]) for i in range(len(field.path))]
    guards = " && ".join(f"has({s})" for s in steps)
    return f"{guards} ? {steps[-1]} : {{}}"


def _children(x: str, k: str) -> str:
    """The values of a map, the items of a list, nothing else: the next level below ``x``."""
    return f"(type({x}) == map ? {x}.map({k}, {x}[{k}]) : (type({x}) == list ? {x} : []))"


def _over_level(root: str, depth: int, body: Callable[[str], str]) -> str:
    """CEL summing ``body(node)`` (an int expression) over every node ``depth`` levels below ``root``."""
    if depth == 0:
        return body(root)
    names = [root, *(f"x{d}" for d in range(1, depth + 1))]
    inner = body(names[depth])
    for d in range(depth, 0, -1):
        inner = f"{_children(names[d - 1], f'k{d}')}.map({names[d]}, {inner}).sum()"
    return inner


def _count(x: str) -> str:
    """How many children ``x`` has."""
    return f"(type({x}) == map || type({x}) == list ? size({x}) : 0)"


def _weight(x: str) -> str:
    """The weight of ``x``'s children: each key and value, with their characters."""
    node, chars = NODE_WEIGHT, "(type({v}) == string ? size({v}) : 0)"
    in_map = f"{x}.map(k, {2 * node} + size(k) + {chars.format(v=f'{x}[k]')}).sum()"
    in_list = f"{x}.map(e, {node} + {chars.format(v='e')}).sum()"
    return f"(type({x}) == map ? {in_map} : (type({x}) == list ? {in_list} : 0))"


def variables(field: SettingsField) -> list[dict[str, str]]:
    """The policy's variables for one field: the value, each level's count and weight, the totals.

    ``<p>_c<d>`` is the running weight through level ``d``, or the first total past the limit (it
    then stays there); ``<p>_n<d>`` counts the nodes of level ``d``.
    """
    p, limit = field.prefix, MAX_SETTINGS_WEIGHT
    root = f"variables.{p}"
    out = [{"name": p, "expression": _root(field)}]
    total = str(NODE_WEIGHT)
    for d in range(1, MAX_SETTINGS_DEPTH + 2):
        out.append({"name": f"{p}_n{d}", "expression": _over_level(root, d - 1, _count)})
        if d > MAX_SETTINGS_DEPTH:
            break
        out.append({"name": f"{p}_w{d}", "expression": _over_level(root, d - 1, _weight)})
        floor = f"{total} + {NODE_WEIGHT} * variables.{p}_n{d}"
        within = f"{floor} > {limit} ? {floor} : {total} + variables.{p}_w{d}"
        running = within if d == 1 else f"{total} > {limit} ? {total} : ({within})"
        out.append({"name": f"{p}_c{d}", "expression": running})
        total = f"variables.{p}_c{d}"
    return out


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def validations(field: SettingsField) -> list[dict[str, str]]:
    """The two rules of one field: not heavier than the limit, not deeper than the depth."""
    p, limit, depth = field.prefix, MAX_SETTINGS_WEIGHT, MAX_SETTINGS_DEPTH
    total = f"variables.{p}_c{depth}"
    before, after = heavy_message(_MARK).split(str(_MARK), 1)
    heavy = f"{_quote(field.dotted + ': ' + before)} + string({total}) + {_quote(after)}"
    deep = f"{field.dotted}: {deep_message()}"
    fallback = f"{field.dotted}: settings weigh more than the {limit} allowed"  # if the message expression fails
    return [
        {"expression": f"{total} <= {limit}", "messageExpression": heavy, "message": fallback, "reason": "Invalid"},
        {"expression": f"{total} > {limit} || variables.{p}_n{depth + 1} == 0", "message": deep, "reason": "Invalid"},
    ]


def policy(name: str = POLICY_NAME) -> dict[str, Any]:
    """The ValidatingAdmissionPolicy: settings of SearchExperiments bounded on create and on spec changes."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["searchexperiments"],
                    }
                ]
            },
            "matchConditions": [
                {
                    "name": "creates-or-changes-the-spec",
                    "expression": "request.operation != 'UPDATE' || !has(oldObject.spec) || !has(object.spec)"
                    " || object.spec != oldObject.spec",
                }
            ],
            "variables": [v for f in FIELDS for v in variables(f)],
            "validations": [v for f in FIELDS for v in validations(f)],
        },
    }


def binding(name: str = POLICY_NAME) -> dict[str, Any]:
    """The binding that puts :func:`policy` in force, denying (the only action that refuses a request)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }


__all__ = ["FIELDS", "POLICY_NAME", "SettingsField", "binding", "policy", "validations", "variables"]

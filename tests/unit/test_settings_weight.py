"""The settings weight: what it counts, where it stops, and the bound it gives on KUBENAS_SETTINGS.

The API server computes the same weight in the admission policy's CEL (tests/e2e/test_admission_corpus.py
holds the two to the same verdicts and messages); here the Python measure alone, and the proof in
kubenas/api/settings.py checked on random settings.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubenas.api import admission_policy
from kubenas.api.settings import (
    BYTES_PER_WEIGHT,
    ENV_STRING_MAX,
    MAX_SETTINGS_DEPTH,
    MAX_SETTINGS_WEIGHT,
    NODE_WEIGHT,
    Weight,
    deep_message,
    heavy_message,
    settings_json,
    weigh,
)
from kubenas.load import ManifestError, parse_document
from tests.conftest import experiment_dict

#: every character JSON may take the most bytes for: control characters, quotes, astral planes
AWKWARD = st.text(st.sampled_from(["\x00", "\x1f", '"', "\\", "é", "\u2028", "\U0001f600", "a"]), max_size=40)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    AWKWARD,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=12), st.dictionaries(st.one_of(st.text(max_size=12), AWKWARD), inner, max_size=8)
    ),
    max_leaves=400,
)
SETTINGS = st.dictionaries(st.one_of(st.text(max_size=20), AWKWARD), VALUES, max_size=64)


def nested(depth: int, leaf: Any = 1) -> Any:
    """``leaf`` inside ``depth`` one-item lists."""
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def test_the_weight_counts_each_key_and_value_and_their_characters() -> None:
    # the map 5; "ab" 5+2 and its 1 5; "s" 5+1 and "xyz" 5+3; "l" 5+1, the list 5, its "q" 5+1 and None 5
    doc = {"ab": 1, "s": "xyz", "l": ["q", None]}
    assert weigh(doc) == Weight(5 + (7 + 5) + (6 + 8) + (6 + 5 + 6 + 5))
    assert weigh({}) == Weight(NODE_WEIGHT)
    assert weigh({"é": "\U0001f600"}).weight == 5 + 6 + 6  # characters are code points, as CEL's size()


def test_depth_counts_levels_below_the_settings_map() -> None:
    assert weigh({"a": nested(MAX_SETTINGS_DEPTH - 1)}) == Weight(5 + 6 + 5 * MAX_SETTINGS_DEPTH)
    assert weigh({"a": nested(MAX_SETTINGS_DEPTH - 1, [])}).deep is False  # an empty list at the last level
    assert weigh({"a": nested(MAX_SETTINGS_DEPTH)}).deep
    assert weigh({"a": nested(MAX_SETTINGS_DEPTH - 1, {"k": 1})}).deep


def test_the_weight_is_checked_before_a_level_is_walked() -> None:
    # a million items: refused on their count (5 each), the level never weighed
    huge = weigh({"a": [0] * 1_000_000})
    assert huge.heavy and huge.weight == 5 + 6 + 5 + 5 * 1_000_000
    # too heavy wins over too deep: the weight counts the levels down to the depth limit
    assert weigh({"a": "x" * MAX_SETTINGS_WEIGHT, "d": nested(20)}).heavy
    assert weigh({"a": "x" * (MAX_SETTINGS_WEIGHT - 16)}) == Weight(MAX_SETTINGS_WEIGHT)
    assert weigh({"a": "x" * (MAX_SETTINGS_WEIGHT - 15)}) == Weight(MAX_SETTINGS_WEIGHT + 1, heavy=True)


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"a": "x" * MAX_SETTINGS_WEIGHT}, heavy_message(MAX_SETTINGS_WEIGHT + 16)), ({"a": nested(9)}, deep_message())],
)
def test_both_settings_fields_are_refused_at_their_path(settings: dict[str, Any], message: str) -> None:
    for path, doc in (
        ("spec.trialTemplate.settings", experiment_dict(trialTemplate={"command": ["x"], "settings": settings})),
        ("spec.oneShot.supernetSettings", experiment_dict(oneShot={"supernetSettings": settings})),
    ):
        with pytest.raises(ManifestError) as err:
            parse_document(doc, kubernetes=False)
        assert (path, message) in err.value.problems


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(SETTINGS)
def test_settings_within_the_limit_encode_in_six_bytes_per_unit_of_weight(doc: dict[str, Any]) -> None:
    weight = weigh(doc)
    if weight.heavy or weight.deep:
        return
    assert len(settings_json(doc).encode()) <= BYTES_PER_WEIGHT * weight.weight


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(SETTINGS, SETTINGS)
def test_supernet_settings_over_trial_settings_fit_one_environment_string(a: dict[str, Any], b: dict[str, Any]) -> None:
    if any(w.heavy or w.deep for w in (weigh(a), weigh(b))):
        return
    merged = {**a, **b}  # what a one-shot supernet gets (kubenas.core.oneshot.supernet_settings)
    assert weigh(merged).weight <= weigh(a).weight + weigh(b).weight
    env = f"KUBENAS_SETTINGS={settings_json(merged)}".encode() + b"\0"
    assert len(env) <= ENV_STRING_MAX


@pytest.mark.parametrize("char", ["\x01", '"', "\U0001f600", "é", "a"])
def test_settings_at_the_limit_fit_twice_over_whatever_their_characters(char: str) -> None:
    """The worst case of the proof, reached: one long string of the costliest character at the limit."""
    doc = {"k": char * (MAX_SETTINGS_WEIGHT - 16)}
    assert weigh(doc) == Weight(MAX_SETTINGS_WEIGHT)
    size = len(settings_json(doc).encode())
    assert size <= BYTES_PER_WEIGHT * MAX_SETTINGS_WEIGHT
    assert 2 * size + len("KUBENAS_SETTINGS=") + 1 <= ENV_STRING_MAX
    if char == "\x01":
        assert size > (BYTES_PER_WEIGHT - 0.1) * MAX_SETTINGS_WEIGHT  # the bound is tight: 6 bytes are reached


def test_settings_json_is_compact_sorted_and_unescaped() -> None:
    assert settings_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    assert json.loads(settings_json({"x": "\x00\U0001f600"})) == {"x": "\x00\U0001f600"}


def test_the_policy_is_written_from_the_same_limits_and_words() -> None:
    policy = admission_policy.policy()
    spec = policy["spec"]
    rules = spec["matchConstraints"]["resourceRules"]
    assert [(r["apiGroups"], r["resources"], r["operations"]) for r in rules] == [
        (["kubenas.io"], ["searchexperiments"], ["CREATE", "UPDATE"])
    ]
    names = [v["name"] for v in spec["variables"]]
    assert len(names) == len(set(names)) and all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)
    for field in admission_policy.FIELDS:
        heavy, deep = admission_policy.validations(field)
        assert deep["message"] == f"{field.dotted}: {deep_message()}"
        assert heavy["messageExpression"].startswith(f"'{field.dotted}: settings weigh at least ' + string(")
        assert f"<= {MAX_SETTINGS_WEIGHT}" in heavy["expression"]
        assert heavy["reason"] == deep["reason"] == "Invalid"
        # every level down to the depth limit is counted and weighed, the one below only counted
        assert f"{field.prefix}_n{MAX_SETTINGS_DEPTH + 1}" in names
        assert f"{field.prefix}_w{MAX_SETTINGS_DEPTH}" in names
        assert f"{field.prefix}_w{MAX_SETTINGS_DEPTH + 1}" not in names
    binding = admission_policy.binding()["spec"]
    assert binding == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}


def test_numbers_are_held_as_the_api_server_holds_them() -> None:
    """int64 stays whole; beyond it a float64 (weight 5 either way); beyond float64 refused, as the server does."""
    doc = experiment_dict(trialTemplate={"command": ["x"], "settings": {"big": 2**70, "small": 2**63 - 1}})
    exp = parse_document(doc, kubernetes=False)
    held = exp.spec.trial_template.settings
    assert isinstance(held["big"], float) and isinstance(held["small"], int) and held["small"] == 2**63 - 1
    with pytest.raises(ManifestError) as err:
        huge = experiment_dict(trialTemplate={"command": ["x"], "settings": {"huge": 10**400}})
        parse_document(huge, kubernetes=False)
    assert err.value.problems[0][0] == "spec.trialTemplate.settings.huge"


def test_nulls_inside_settings_are_kept_and_weighed_as_the_api_server_keeps_them() -> None:
    """No schema says a free-form value is not nullable, so the server keeps it (and its weight)."""
    doc = experiment_dict(
        trialTemplate={"command": ["x"], "settings": {"a": None, "b": {"c": None}}, "workingDir": None}
    )
    held = parse_document(doc, kubernetes=False).spec.trial_template
    assert held.settings == {"a": None, "b": {"c": None}} and held.working_dir is None
    assert weigh(held.settings).weight == 5 + 11 + 11 + 11

"""Free-form trainer settings: the type ``trialTemplate.settings`` and ``oneShot.supernetSettings`` share.

Settings reach the trainer as one environment variable, ``KUBENAS_SETTINGS`` (JSON, :func:`settings_json`),
and Linux caps a single environment string at 128 KiB (``MAX_ARG_STRLEN``, the ``NAME=`` and the
final NUL included): past it the container cannot even start, and every trial would fail the same
way. Hence three bounds: the number of keys (64), the nesting depth and the weight.

The values are free-form JSON, which a structural CRD schema holds only as
``x-kubernetes-preserve-unknown-fields``; CRD rules cannot see inside such a field (its CEL type is
not declared), so the CRD bounds only the keys. A ValidatingAdmissionPolicy sees the object as plain
untyped data and can walk inside it, but CEL cannot encode JSON. So the size is measured by a
*weight* that CEL and Python compute identically (``kubenas.api.admission_policy`` writes the CEL
from the constants here, and the admission corpus sends the same manifests through both):

* the settings map itself, every value at any depth and every key of a nested or top-level map
  count :data:`NODE_WEIGHT` (5) each;
* every character (Unicode code point: CEL's ``size()`` and Python's ``len()``) of a key or of a
  string value counts 1 more;
* values are walked level by level, the settings map at level 0: a value below level
  :data:`MAX_SETTINGS_DEPTH` is refused as too deep, and the weight counts levels 0 to
  :data:`MAX_SETTINGS_DEPTH`. Each level's node count is checked against the limit before the level
  is weighed, so a huge value never makes the server walk more than the limit's worth of nodes.

**The bound.** :func:`settings_json` writes compact JSON with ``ensure_ascii=False``, so the bytes of
the encoding split into each node's own bytes (its brackets or quotes, its characters, its ``:`` or
``,``), and each node takes at most 6 bytes per unit of weight:

* a character of a string or key takes at most 6 bytes: a control character is written ``\\u00XX``
  (6), ``"`` and ``\\`` two, anything else its UTF-8 bytes (at most 4); its weight is 1;
* a string value or a key: two quotes and a ``,`` or ``:`` (3 bytes) against a weight of 5;
* a number: the API server holds an int64 (at most 20 characters) or a float64, whose shortest
  repr is at most 24 characters (``-2.2250738585072014e-308``); with its ``,`` at most 25 bytes
  against 5 * 6 = 30; ``false``, ``true`` and ``null`` fewer; a map or list: two brackets and a ``,``.

So settings of weight *w* encode in at most 6 *w* bytes: 61,440 for :data:`MAX_SETTINGS_WEIGHT`.
A one-shot supernet gets the trial settings with ``supernetSettings`` on top, of weight below twice
the limit: at most 122,880 bytes, with ``KUBENAS_SETTINGS=`` and the NUL still under 131,072.
``tests/unit/test_settings_weight.py`` checks the bound on random settings. (``kubenas validate``
holds numbers as the API server does: a whole number beyond int64 becomes a float64 there too.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field

#: the most keys settings may have (the CRD's maxProperties)
MAX_SETTINGS_KEYS = 64
#: the deepest level a value may sit at, the settings map being level 0
MAX_SETTINGS_DEPTH = 8
#: the weight of the settings map, of each value at any depth and of each key
NODE_WEIGHT = 5
#: the most settings may weigh: 6 bytes a unit, 60 KiB of JSON, twice that under the 128 KiB cap
MAX_SETTINGS_WEIGHT = 10 * 1024
#: the worst bytes of JSON (:func:`settings_json`) per unit of weight, proved in the module docstring
BYTES_PER_WEIGHT = 6
#: the kernel's cap on one environment string (MAX_ARG_STRLEN), ``NAME=value`` and its NUL
ENV_STRING_MAX = 128 * 1024

WHY = (
    "they travel to the trainer in one environment variable, which Linux caps at 128 KiB;"
    " pass large data as a file instead"
)


def heavy_message(weight: int) -> str:
    """What both the API server and the model say of settings over the weight limit."""
    return (
        f"settings weigh at least {weight}, more than the {MAX_SETTINGS_WEIGHT} allowed (each key and"
        f" value counts {NODE_WEIGHT}, each character of a key or string 1 more): {WHY}"
    )


def deep_message() -> str:
    """What both the API server and the model say of settings nested too deep."""
    return f"settings nest deeper than {MAX_SETTINGS_DEPTH} levels: {WHY}"


@dataclass(frozen=True)
class Weight:
    """The outcome of :func:`weigh`: the weight counted so far, and which bound, if any, was crossed.

    ``weight`` is exact for settings within both bounds; past the weight limit it is the running
    total at the level where the limit was crossed (what the API server reports too).
    """

    weight: int
    heavy: bool = False
    deep: bool = False


def _containers(node: Any) -> int:
    return len(node) if isinstance(node, (dict, list)) else 0


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node.values())
    return node if isinstance(node, list) else []


def _chars(node: Any) -> int:
    return len(node) if isinstance(node, str) else 0


def _level_weight(parents: list[Any]) -> int:
    """The weight of the children of ``parents``: keys and values, each with its characters."""
    total = 0
    for parent in parents:
        if isinstance(parent, dict):
            total += sum(2 * NODE_WEIGHT + len(k) + _chars(v) for k, v in parent.items())
        elif isinstance(parent, list):
            total += sum(NODE_WEIGHT + _chars(v) for v in parent)
    return total


def weigh(settings: Any) -> Weight:
    """Weigh ``settings`` level by level, exactly as the admission policy's CEL does.

    At each level the count of its nodes is checked before the level is weighed (each node weighs
    at least :data:`NODE_WEIGHT`), and the walk stops as soon as the limit is crossed.
    """
    level, total = [settings], NODE_WEIGHT
    for _ in range(MAX_SETTINGS_DEPTH):
        floor = total + NODE_WEIGHT * sum(_containers(n) for n in level)
        if floor > MAX_SETTINGS_WEIGHT:
            return Weight(floor, heavy=True)
        total += _level_weight(level)
        if total > MAX_SETTINGS_WEIGHT:
            return Weight(total, heavy=True)
        level = [child for node in level for child in _children(node)]
    return Weight(total, deep=any(_containers(n) for n in level))


def bounded(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` if they fit one environment variable; a ValueError with the admission policy's words."""
    weight = weigh(settings)
    if weight.heavy:
        raise ValueError(heavy_message(weight.weight))
    if weight.deep:
        raise ValueError(deep_message())
    return settings


def settings_json(settings: dict[str, Any]) -> str:
    """``KUBENAS_SETTINGS``: compact, keys sorted, characters unescaped (the encoding the bound is proved for)."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


#: settings as the API holds them: at most 64 keys, 8 levels deep, of weight at most 10,240
Settings = Annotated[dict[str, Any], Field(max_length=MAX_SETTINGS_KEYS), AfterValidator(bounded)]

__all__ = [
    "BYTES_PER_WEIGHT",
    "ENV_STRING_MAX",
    "MAX_SETTINGS_DEPTH",
    "MAX_SETTINGS_KEYS",
    "MAX_SETTINGS_WEIGHT",
    "NODE_WEIGHT",
    "Settings",
    "Weight",
    "bounded",
    "deep_message",
    "heavy_message",
    "settings_json",
    "weigh",
]

"""The admission corpus: malformed manifests, each with the rule it breaks and the field path expected.

Every file in ``corpus/`` starts with two comment lines, ``# rule: ...`` and ``# expect: <path>``,
then one SearchExperiment or Trial that breaks exactly that rule. The unit test runs each through
``kubenas validate``, the end-to-end test through a server-side dry run: both must refuse it and
name the path. ``mutate`` draws random edits of valid manifests for the property-based tests.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

CORPUS = Path(__file__).parent / "corpus"
EXAMPLES = Path(__file__).parents[2] / "examples"


@dataclass(frozen=True)
class Case:
    path: Path
    rule: str
    expected: str

    @property
    def id(self) -> str:
        return self.path.stem

    def document(self) -> dict[str, Any]:
        doc = yaml.safe_load(self.path.read_text())
        assert isinstance(doc, dict)
        return doc


def cases() -> list[Case]:
    out = []
    for path in sorted(CORPUS.glob("*.yaml")):
        text = path.read_text()
        rule = re.search(r"^# rule: (.+)$", text, re.M)
        expected = re.search(r"^# expect: (\S+)$", text, re.M)
        assert rule and expected, f"{path.name} lacks its '# rule:' or '# expect:' line"
        out.append(Case(path, rule.group(1), expected.group(1)))
    return out


def names_path(paths: list[str], expected: str) -> bool:
    """Whether a reported path is the expected one or lies below it (``choices`` covers ``choices[1]``)."""
    return any(p == expected or p.startswith((expected + ".", expected + "[")) for p in paths)


def examples() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(EXAMPLES.glob("*.yaml"))]


# -- random edits of valid manifests ------------------------------------------------------------
#: values a careless or hostile user might put anywhere: wrong types, edges of ranges, typos of enums
VALUES: list[Any] = [
    0,
    1,
    -1,
    2,
    7,
    64,
    100001,
    2**31,
    0.5,
    -0.5,
    1e20,
    -1e300,
    True,
    False,
    None,
    "",
    "x",
    "10",
    "yes",
    "500m",
    "1Gi",
    "-1",
    "Exists",
    "NoExecute",
    "none",
    "conv3x3",
    "a.b",
    "has space",
    "UPPER",
    "x" * 70,
    [],
    ["x"],
    ["none"],
    [1, 1],
    {},
    {"a": 1},
    {"cpu": "2", "memory": "1Gi"},
    {"nvidia.com/gpu": "0.5"},
]


def _containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every mapping and list under ``node`` (where a key can be set, added or removed)."""
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, (dict, list)):
                out += _containers(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if isinstance(v, (dict, list)):
                out += _containers(v, (*path, i))
    return out


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def mutated(draw: st.DrawFn, documents: list[dict[str, Any]]) -> dict[str, Any]:
    """One of ``documents`` with one to three random edits: a value replaced, a key removed or added."""
    doc = copy.deepcopy(draw(st.sampled_from(documents)))
    for _ in range(draw(st.integers(1, 3))):
        spots = [p for p in _containers(doc) if p[:1] in (("spec",), ("metadata",))]
        where = _at(doc, draw(st.sampled_from(spots)))
        action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
        if isinstance(where, dict):
            if action == "add" or not where:
                key = draw(st.sampled_from([*where, "extra", "lables", "maxTrails", "name", "step", "limits"]))
                where[key] = copy.deepcopy(draw(st.sampled_from(VALUES)))
            elif action == "remove":
                del where[draw(st.sampled_from(sorted(where)))]
            else:
                where[draw(st.sampled_from(sorted(where)))] = copy.deepcopy(draw(st.sampled_from(VALUES)))
        elif isinstance(where, list):
            if action == "add" or not where:
                where.append(copy.deepcopy(draw(st.sampled_from(VALUES))))
            elif action == "remove":
                where.pop(draw(st.integers(0, len(where) - 1)))
            else:
                where[draw(st.integers(0, len(where) - 1))] = copy.deepcopy(draw(st.sampled_from(VALUES)))
    return doc

"""Reading manifests: YAML or dicts in, validated models out, errors that name the field.

Validation is as strict as the API server's: no type coercion (``"10"`` is not 10, ``true`` is not
1), unknown fields refused everywhere (metadata included, with a "did you mean"), ``apiVersion`` and
``kind`` required, no NaN or infinity (JSON cannot carry them), and a bounded nesting depth. The
rules themselves live in the models (see ``kubenas.api.base.Rule``), the same ones the CRDs carry.

This module sits above the core, not in ``kubenas.api``: a SearchExperiment is checked by building
its search space too (``kubenas.core.space``), and the API models import nothing of the core.
"""

from __future__ import annotations

import difflib
import io
import json
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError, WithJsonSchema
from pydantic.fields import FieldInfo

from kubenas.api.base import KUBERNETES, RULE_ERROR, ApiModel
from kubenas.api.v1alpha1 import API_VERSION, SearchExperiment, Trial
from kubenas.core.errors import SpecError

#: the deepest nesting a manifest may have; the deepest field of the schema is far shallower.
MAX_DEPTH = 32
KINDS: dict[str, type[ApiModel]] = {"SearchExperiment": SearchExperiment, "Trial": Trial}
#: pydantic's names for the members of a union (``int | str``): not part of a field's path.
_UNION_TAGS = {"int", "str", "float", "bool", "constrained-str", "constrained-int", "list", "dict", "none"}


class ManifestError(SpecError):
    """A manifest failed validation. ``problems`` lists every ``(field path, message)`` found."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "manifest") -> None:
        self.problems = problems
        self.source = source
        field, message = problems[0]
        super().__init__(field, message)

    def __str__(self) -> str:
        lines = [f"{self.source} is invalid:"] + [f"  {f}: {m}" for f, m in self.problems]
        return "\n".join(lines)


class _DepthLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a bound on nesting: a deep document is an error, not a RecursionError."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"nesting deeper than {MAX_DEPTH} levels at line {mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union", "json-or-python")) or part in _UNION_TAGS:
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def _unwrap(annotation: Any) -> Any:
    """The model class inside ``X | None``, ``list[X]`` or ``dict[str, X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _unwrap(arg)
            if found is not None:
                return found
    return None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The wire names of the fields of the object at ``loc`` (for "did you mean")."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = {f.alias or n: f for n, f in current.model_fields.items()}
        if part in fields:
            current = _unwrap(fields[part].annotation)
    return [] if current is None else [f.alias or n for n, f in current.model_fields.items()]


def problems_of(exc: ValidationError, model: type[BaseModel] | None = None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = _path(loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == RULE_ERROR and err.get("ctx", {}).get("field"):
            field = err["ctx"]["field"]
            path = field.lstrip(".") if path == "<root>" else path + field
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
            known = _fields_at(model, loc[:-1]) if model is not None else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
        if (path, msg) not in out:
            out.append((path, msg))
    return out


NOT_FINITE = "NaN and infinities are not numbers JSON can carry"
TOO_LARGE = "a number beyond float64's range, which the API server cannot decode"
#: the API server decodes a whole number as an int64 when it fits, as a float64 otherwise
INT64 = range(-(2**63), 2**63)


def _float_of(node: int) -> float | None:
    """A whole number beyond int64 as the API server holds it (a float64), None if it cannot."""
    try:
        return float(node)
    except OverflowError:
        return None


def _not_finite(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Paths of NaN, infinite and overflowing numbers: JSON has no NaN or infinities, and the API
    server refuses a whole number beyond float64's range, so no API server ever stores them."""
    if isinstance(node, float) and not math.isfinite(node):
        yield path or "<root>", NOT_FINITE
    elif isinstance(node, int) and not isinstance(node, bool) and node not in INT64 and _float_of(node) is None:
        yield path or "<root>", TOO_LARGE
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _not_finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _not_finite(v, f"{path}[{i}]")


def _free_form(field: FieldInfo) -> bool:
    """Whether the CRD holds the field as ``x-kubernetes-preserve-unknown-fields`` (settings,
    architectures): a plain ``dict[str, Any]``, not one given a schema of its own (the PodSpec)."""
    return field.annotation == dict[str, Any] and not any(isinstance(m, WithJsonSchema) for m in field.metadata)


def _as_the_server_sees(node: Any, model: type[BaseModel] | None = None, free: bool = False) -> Any:
    """The document as the API server validates it: whole floats as integers, null fields dropped.

    A whole number beyond int64 becomes a float64, as the server decodes it.
    kubectl sends ``maxTrials: 10.0`` as 10 (Go writes float64 10.0 as ``10``), while ``10.5`` stays a
    float and is refused where an integer is required. The API server prunes a *known* field set to
    null before defaulting and validation (``metric: null`` takes the default, ``maxTrials: null`` is
    missing), but decodes strictly: an unknown field is refused even when it is null. So a null is
    dropped only under a key the ``model`` of that object knows, or in a typed map. Inside a
    ``free`` form field the server keeps every null (no schema says it is not nullable), and so does
    this: the settings' weight counts them.
    """
    if isinstance(node, float) and math.isfinite(node) and node.is_integer() and abs(node) < 2**53:
        return int(node)
    if isinstance(node, int) and not isinstance(node, bool) and node not in INT64:
        return _float_of(node)  # what the server stores: 2**70 becomes 1.1805916207174113e+21
    if isinstance(node, dict):
        fields = {f.alias or n: f for n, f in model.model_fields.items()} if model is not None else {}
        out = {}
        for k, v in node.items():
            field = fields.get(k)
            if v is None and not free and (model is None or field is not None):
                continue  # pruned by the server; an unknown key stays, for the model to refuse
            inner = _unwrap(field.annotation) if field is not None else None
            out[k] = _as_the_server_sees(v, inner, free or (field is not None and _free_form(field)))
        return out
    if isinstance(node, list):
        return [_as_the_server_sees(v, model, free) for v in node]
    return node


def parse_document(data: Any, source: str = "manifest", kubernetes: bool = True) -> ApiModel:
    """Validate one manifest of a kind Kubenas serves, strictly, as the API server would.

    ``kubernetes`` adds the rules that only hold on a cluster (a trainer image is required there).
    """
    if not isinstance(data, dict):
        raise ManifestError([("<root>", "a manifest must be a mapping")], source)
    problems = list(_not_finite(data))
    for key in ("apiVersion", "kind"):
        if key not in data:
            problems.append((key, "is required"))
    kind = data.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if "kind" in data and model is None:
        problems.append(("kind", f"{kind!r} is not a kind Kubenas serves ({', '.join(KINDS)})"))
    if problems:
        raise ManifestError(problems, source)
    assert model is not None
    context = {KUBERNETES: kubernetes}
    try:
        wire = json.dumps(_as_the_server_sees(data, model), default=str)
        obj = model.model_validate_json(wire, strict=True, context=context)
    except ValidationError as exc:
        raise ManifestError(problems_of(exc, model), source) from None
    if isinstance(obj, SearchExperiment):
        _check_space(obj, source)
    return obj


def _check_space(exp: SearchExperiment, source: str) -> None:
    """Build the search space too, so an error the expanders find shows now, not in the controller, and
    check the architectures the manifest lists (a retrain's, a seedFrom's) against it the same way."""
    from kubenas.core.retrain import seeds
    from kubenas.core.space import build_space
    from kubenas.core.strategies.retrain import FIELD as RETRAIN_FIELD

    try:
        space = build_space(exp.spec.search_space)
        seeds(exp.spec, space)
        retrain = exp.spec.strategy.retrain
        for i, c in enumerate(retrain.architectures if retrain is not None else []):
            space.validate(c.architecture, f"{RETRAIN_FIELD}[{i}].architecture")
    except SpecError as exc:
        raise ManifestError([(exc.field, exc.message)], source) from None


def parse_experiment(data: Any, source: str = "manifest", kubernetes: bool = False) -> SearchExperiment:
    """Validate a SearchExperiment given as a dict (local mode by default: no image needed)."""
    if isinstance(data, dict) and "kind" in data and data["kind"] != "SearchExperiment":
        raise ManifestError([("kind", f"expected SearchExperiment, got {data['kind']!r}")], source)
    obj = parse_document(data, source, kubernetes)
    assert isinstance(obj, SearchExperiment)
    return obj


def read_documents(path: str | Path) -> list[Any]:
    """The non-empty YAML documents of a file; ManifestError for a missing file, bad or too deep YAML."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ManifestError([("<file>", f"no such file: {path}")], str(path)) from None
    try:
        stream = io.StringIO(text)
        stream.name = str(path)  # YAML errors name the file, not "<unicode string>"
        return [d for d in yaml.load_all(stream, Loader=_DepthLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError([("<file>", f"not valid YAML: {exc}")], str(path)) from None


@dataclass(frozen=True)
class Verdict:
    """The outcome for one document of a file: the object, or the problems found."""

    source: str
    obj: ApiModel | None
    error: ManifestError | None


def validate_file(path: str | Path, kubernetes: bool = True) -> list[Verdict]:
    """Validate every document of a file as the API server would, one verdict per document."""
    try:
        docs = read_documents(path)
    except ManifestError as exc:
        return [Verdict(str(path), None, exc)]
    if not docs:
        return [Verdict(str(path), None, ManifestError([("<file>", "no documents")], str(path)))]
    out = []
    for i, doc in enumerate(docs):
        source = str(path) if len(docs) == 1 else f"{path} (document {i + 1})"
        try:
            out.append(Verdict(source, parse_document(doc, source, kubernetes), None))
        except ManifestError as exc:
            out.append(Verdict(source, None, exc))
    return out


def load_experiment(path: str | Path) -> SearchExperiment:
    """Read one SearchExperiment from a YAML file (the first document of that kind), for local mode."""
    for doc in read_documents(path):
        if isinstance(doc, dict) and doc.get("kind") == "SearchExperiment":
            return parse_experiment(doc, str(path))
    raise ManifestError([("kind", "no document of kind SearchExperiment in the file")], str(Path(path)))


__all__ = [
    "API_VERSION",
    "MAX_DEPTH",
    "ManifestError",
    "Verdict",
    "load_experiment",
    "parse_document",
    "parse_experiment",
    "problems_of",
    "read_documents",
    "validate_file",
]

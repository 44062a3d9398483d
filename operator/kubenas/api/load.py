"""Reading manifests: YAML or dicts in, validated models out, errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubenas.api.v1alpha1 import SearchExperiment
from kubenas.core.errors import SpecError


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


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def problems_of(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append((_path(tuple(err["loc"])), msg))
    return out


def parse_experiment(data: Any, source: str = "manifest") -> SearchExperiment:
    """Validate a SearchExperiment given as a dict; builds its search space too, so every error shows now."""
    from kubenas.core.space import build_space

    if not isinstance(data, dict):
        raise ManifestError([("<root>", "a SearchExperiment manifest must be a mapping")], source)
    try:
        exp = SearchExperiment.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(problems_of(exc), source) from None
    try:
        build_space(exp.spec.search_space)
    except SpecError as exc:
        raise ManifestError([(exc.field, exc.message)], source) from None
    return exp


def load_experiment(path: str | Path) -> SearchExperiment:
    """Read one SearchExperiment from a YAML file (the first document of that kind)."""
    path = Path(path)
    try:
        with path.open() as stream:  # a named stream: YAML errors name the file, not "<unicode string>"
            docs = [d for d in yaml.safe_load_all(stream) if d is not None]
    except FileNotFoundError:
        raise ManifestError([("<file>", f"no such file: {path}")], str(path)) from None
    except yaml.YAMLError as exc:
        raise ManifestError([("<file>", f"not valid YAML: {exc}")], str(path)) from None
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "SearchExperiment":
            return parse_experiment(doc, str(path))
    raise ManifestError([("kind", "no document of kind SearchExperiment in the file")], str(path))

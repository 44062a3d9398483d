"""The two images, checked from their Dockerfiles (no Docker here): base image, user, entrypoint,
and the operator image's promise of no torch. hadolint runs too where it is installed."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from kubenas_dev.packaging_testing import require
from tests.conftest import REPO


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        found = [arg for kw, arg in self.instructions if kw == keyword]
        return found[-1] if found else None

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the build stages of a Dockerfile (line continuations joined)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            image = rest.split()[0]
            for name, value in args.items():
                image = image.replace("${" + name + "}", value).replace("$" + name, value)
            stages.append(Stage(image))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        elif keyword == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name] = value
    return args, stages


def _exec_form(arg: str | None) -> list[str]:
    assert arg is not None, "no ENTRYPOINT"
    value = json.loads(arg)  # exec form: signals reach the process, no shell in between
    assert isinstance(value, list)
    return value


def _pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and tag not in ("", "latest") and "/" not in tag


# -- the operator image ----------------------------------------------------------------------------
def test_operator_image_is_slim_multi_stage_and_pinned() -> None:
    _, stages = parse(REPO / "Dockerfile")
    assert len(stages) >= 2, "a build stage keeps pip's work out of the final image"
    final = stages[-1]
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", final.base), final.base
    assert all(_pinned(s.base) for s in stages)


def test_operator_image_runs_as_a_non_root_uid() -> None:
    _, stages = parse(REPO / "Dockerfile")
    user = stages[-1].last("USER")
    assert user is not None and user.split(":")[0].isdigit(), "USER must be numeric for runAsNonRoot"
    assert int(user.split(":")[0]) != 0
    values = yaml.safe_load((REPO / "charts" / "kubenas" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(user.split(":")[0]), "chart and image disagree on uid"


def test_operator_image_entrypoint_runs_the_operator() -> None:
    """The image alone (no command in the pod spec) starts the operator, the command the chart runs."""
    _, stages = parse(REPO / "Dockerfile")
    entrypoint = _exec_form(stages[-1].last("ENTRYPOINT"))
    assert entrypoint == ["kubenas", "operator"]
    deployment = (REPO / "charts" / "kubenas" / "templates" / "deployment.yaml").read_text()
    assert f"command: {json.dumps(entrypoint)}" in deployment


def test_operator_image_has_no_torch() -> None:
    """The base install (what the operator image pip-installs) must not pull torch in."""
    _, stages = parse(REPO / "Dockerfile")
    installs = " ".join(a for s in stages for a in s.all("RUN") if "pip install" in a)
    assert "[" not in installs, f"the operator image installs an extra: {installs}"
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in deps if re.match(r"(torch|torchvision|scikit-learn|matplotlib)\b", d)]


def test_operator_image_exposes_the_chart_ports() -> None:
    _, stages = parse(REPO / "Dockerfile")
    exposed = {int(p.split("/")[0]) for arg in stages[-1].all("EXPOSE") for p in arg.split()}
    values = yaml.safe_load((REPO / "charts" / "kubenas" / "values.yaml").read_text())
    assert {values["metrics"]["port"], values["health"]["port"]} <= exposed


# -- the trainer image -----------------------------------------------------------------------------
def test_trainer_image_runs_the_trainer_as_non_root() -> None:
    _, stages = parse(REPO / "trainer_image" / "Dockerfile")
    final = stages[-1]
    assert "pytorch" in final.base and _pinned(final.base), final.base
    user = final.last("USER")
    assert user is not None and user.isdigit() and int(user) != 0
    assert _exec_form(final.last("ENTRYPOINT")) == ["kubenas-trainer"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "kubenas-trainer" in scripts
    installs = " ".join(final.all("RUN"))
    assert "[torch]" in installs, "the trainer and the controller pod need the torch extra"


# -- hadolint ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dockerfile", ["Dockerfile", "trainer_image/Dockerfile"])
def test_hadolint_finds_nothing(dockerfile: str) -> None:
    hadolint = require("hadolint")
    proc = subprocess.run([str(hadolint), str(REPO / dockerfile)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr

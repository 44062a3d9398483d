"""The trainer image's Dockerfile: a CUDA PyTorch base, the whole project with torch, non-root, trainer entrypoint."""

from __future__ import annotations

import json
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "trainer_image" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_base_is_a_cuda_pytorch_runtime() -> None:
    args = {k: v for k, v in (i[1].split("=", 1) for i in _instructions() if i[0] == "ARG" and "=" in i[1])}
    base = next(v for k, v in _instructions() if k == "FROM")
    base = args.get(base.strip("${}"), base)
    assert base.startswith("pytorch/pytorch:") and "cuda" in base and base.endswith("-runtime")


def test_installs_the_project_with_torch_and_runs_as_non_root() -> None:
    steps = _instructions()
    assert any(k == "RUN" and "[torch]" in v and "pip install" in v for k, v in steps)
    user = [v for k, v in steps if k == "USER"][-1]
    assert user.isdigit() and int(user) >= 1000
    assert json.loads([v for k, v in steps if k == "ENTRYPOINT"][-1]) == ["kubenas-trainer"]

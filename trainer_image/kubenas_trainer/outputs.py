"""What a trial leaves in ``KUBENAS_OUTPUT_DIR``: trained weights, the architecture that makes sense of them,
and the metrics of every epoch.

``architecture.json`` carries everything needed to rebuild the network (decisions, their genotype
string, search-space shape, resolved settings, input shape and class count), so ``model.pt`` — a plain
state dict, loadable without unpickling code — can be used without this trial's environment.
``metrics.jsonl`` holds one line per epoch, the learning curve the result file has no room for.
On Kubernetes the folder is the trial's folder of the artifact store (``spec.artifacts``); locally it
is ``trials/<trial>/output`` of the results folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kubenas.insights.genotype import genotype
from kubenas_trainer.contract import TrialContext
from kubenas_trainer.settings import Settings

WEIGHTS_FILE = "model.pt"
ARCHITECTURE_FILE = "architecture.json"
METRICS_FILE = "metrics.jsonl"


def save_outputs(
    directory: Path,
    model: nn.Module,
    context: TrialContext,
    settings: Settings,
    sample_shape: tuple[int, ...],
    num_classes: int,
    result: Mapping[str, Any],
    epochs: Sequence[Mapping[str, Any]] = (),
) -> list[Path]:
    """Write ``model.pt``, ``architecture.json`` and ``metrics.jsonl`` into ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    torch.save(state, weights)
    described = {
        "trial": context.trial,
        "experiment": context.experiment,
        "seed": context.seed,
        "architecture": context.architecture,
        "architectureId": context.architecture_id,
        "genotype": genotype(context.architecture),
        "searchSpace": context.search_space,
        "settings": settings.model_dump(),
        "input": {"shape": list(sample_shape), "classes": num_classes},
        "result": dict(result),
    }
    arch = directory / ARCHITECTURE_FILE
    arch.write_text(json.dumps(described, indent=2, default=str) + "\n")
    metrics = directory / METRICS_FILE
    metrics.write_text("".join(json.dumps(dict(e), default=str) + "\n" for e in epochs))
    return [weights, arch, metrics]


def load_model(directory: Path) -> nn.Module:
    """The trained network of a trial's output folder: rebuilt from ``architecture.json``, weights from ``model.pt``.

    What ``kubenas export`` points its users at: the same builder the trial trained with, so the
    state dict's names and shapes match by construction (``load_state_dict`` is strict).
    """
    from kubenas_trainer.candidate import parse_candidate
    from kubenas_trainer.model import MacroConfig, build_network

    described = json.loads((directory / ARCHITECTURE_FILE).read_text())
    settings = Settings(**described["settings"])
    shape, classes = described["input"]["shape"], described["input"]["classes"]
    candidate = parse_candidate(described["architecture"], described.get("searchSpace"))
    model = build_network(candidate, MacroConfig.from_settings(settings, shape[0], classes))
    model.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model.eval()

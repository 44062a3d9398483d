"""What a trial leaves in ``KUBENAS_OUTPUT_DIR``: trained weights and the architecture that makes sense of them.

``architecture.json`` carries everything needed to rebuild the network (decisions, search-space shape,
resolved settings, input shape and class count), so ``model.pt`` — a plain state dict, loadable without
unpickling code — can be used without this trial's environment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kubenas_trainer.contract import TrialContext
from kubenas_trainer.settings import Settings

WEIGHTS_FILE = "model.pt"
ARCHITECTURE_FILE = "architecture.json"


def save_outputs(
    directory: Path,
    model: nn.Module,
    context: TrialContext,
    settings: Settings,
    sample_shape: tuple[int, ...],
    num_classes: int,
    result: Mapping[str, Any],
) -> list[Path]:
    """Write ``model.pt`` and ``architecture.json`` into ``directory`` (created if needed); return their paths."""
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
        "searchSpace": context.search_space,
        "settings": settings.model_dump(),
        "input": {"shape": list(sample_shape), "classes": num_classes},
        "result": dict(result),
    }
    arch = directory / ARCHITECTURE_FILE
    arch.write_text(json.dumps(described, indent=2, default=str) + "\n")
    return [weights, arch]

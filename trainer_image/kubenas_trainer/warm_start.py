"""Starting a candidate from trained weights: its parent's (inheritance) or any checkpoint (fine-tuning).

``KUBENAS_INIT_WEIGHTS`` names a trial's output folder (``model.pt`` and ``architecture.json``) or a
``model.pt`` file. Tensors are matched by name and shape, the way the network builder names them, so
everything a child shares with its parent (stem, reduction blocks, head, the edges whose operation
did not change) starts where the parent ended. Where an edge changed, the child starts as close to
its parent's function as the operations allow, after Net2Net (Chen et al. 2016) and network morphism
(Wei et al. 2016):

* a convolution whose kernel grew (``nor_conv_1x1`` to ``nor_conv_3x3``) gets the parent's kernel in
  its centre and zeros around it: the same function, exactly; a kernel that shrank keeps the centre
  of the parent's (not function-preserving, but the nearest start);
* an edge the parent did not have (``none`` there, or an edge the parent's cell left dead) gets its
  last batch norm's scale and shift set to zero, so it adds exactly nothing until training grows it
  (a new skip or pooling edge has nothing to scale: it changes the function);
* an edge whose parameter-free operation (skip, pooling) became a convolution starts fresh: no
  initialisation of ReLU-conv-BN reproduces an identity or a pooling.

A checkpoint that is missing, unreadable or shares no tensor with the candidate never fails the
trial: it trains from scratch and the reason is logged. What was copied is reported in the trial's
metrics (``inherited_tensors``, ``inherited_fraction``), so the search and the user can see it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kubenas_trainer.candidate import live_edges, parse_candidate
from kubenas_trainer.errors import BadCandidate

WEIGHTS_FILE = "model.pt"
ARCHITECTURE_FILE = "architecture.json"


@dataclass
class WarmStart:
    """What a warm start did: tensors copied, kernels resized, edges zeroed, or why nothing was loaded."""

    source: str
    copied: int = 0
    resized: int = 0
    zeroed: list[str] = field(default_factory=list)
    total: int = 0
    copied_params: int = 0
    total_params: int = 0
    reason: str | None = None  # set when training starts from scratch

    @property
    def loaded(self) -> bool:
        return self.reason is None

    def message(self) -> str:
        if not self.loaded:
            return f"warm start from {self.source}: {self.reason}; training from scratch"
        zeroed = f", {len(self.zeroed)} new edge(s) starting at zero" if self.zeroed else ""
        resized = f", {self.resized} kernel(s) resized" if self.resized else ""
        return (
            f"warm start from {self.source}: {self.copied} of {self.total} tensors copied"
            f" ({self.copied_params} of {self.total_params} parameters){resized}{zeroed}"
        )

    def metrics(self) -> dict[str, float]:
        """The result file's record of it (empty when nothing was loaded)."""
        if not self.loaded:
            return {}
        return {
            "inherited_tensors": self.copied + self.resized,
            "inherited_fraction": self.copied_params / self.total_params if self.total_params else 0.0,
        }


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The state dict at ``path`` (a folder holding model.pt, or the file) and the folder's
    architecture.json when it is a JSON object (anything else is ignored: it only refines the start).
    Raises whatever the file makes torch.load raise (OSError, UnpicklingError, KeyError, ... for
    arbitrary bytes) or ValueError for a file that is not a state dict of named tensors."""
    is_file = path.is_file() or path.suffix == ".pt"
    folder, weights = (path.parent, path) if is_file else (path, path / WEIGHTS_FILE)
    if not weights.is_file():
        raise FileNotFoundError(f"{path} does not exist" if is_file else f"no {WEIGHTS_FILE} in {folder}")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) and v.layout == torch.strided and not v.is_quantized
        for k, v in state.items()
    ):
        raise ValueError(f"{weights} is not a state dict of named tensors")
    described = None
    arch_file = folder / ARCHITECTURE_FILE
    if arch_file.is_file():
        try:
            described = json.loads(arch_file.read_text())
        except (OSError, ValueError, RecursionError):  # ValueError: bad JSON or UTF-8; Recursion: absurd nesting
            described = None
    return dict(state), described if isinstance(described, dict) else None


def _resized_kernel(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """``source``'s conv kernel fitted to ``target``'s size, centred (zero-padded or cropped); None when
    they are not two square odd kernels of the same channels."""
    if source.dim() != 4 or target.dim() != 4 or source.shape[:2] != target.shape[:2]:
        return None
    ks, kt = source.shape[2], target.shape[2]
    if source.shape[3] != ks or target.shape[3] != kt or ks % 2 == 0 or kt % 2 == 0:
        return None
    if kt >= ks:
        pad = (kt - ks) // 2
        out = torch.zeros_like(target)
        out[:, :, pad : pad + ks, pad : pad + ks] = source.to(target.dtype)
        return out
    crop = (ks - kt) // 2
    return source[:, :, crop : crop + kt, crop : crop + kt].to(target.dtype).clone()


def _parent_absent_edges(described: Mapping[str, Any] | None) -> set[str] | None:
    """The ``ops`` keys (``"<to>_<from>"``) the parent's cell did not build (none, or dead); None when
    the parent's architecture is unknown."""
    if not isinstance(described, Mapping) or not isinstance(described.get("architecture"), Mapping):
        return None
    space = described.get("searchSpace")
    if space is not None and not isinstance(space, Mapping):
        return None
    try:
        parent = parse_candidate(described["architecture"], space)
        if parent.nodes is None:
            return set()
        built = {f"{to}_{src}" for to, src in live_edges(parent.nodes, parent.edges)}
    except (BadCandidate, TypeError, ValueError, KeyError, AttributeError):  # a file written by anyone
        return None
    return {f"{to}_{src}" for to, src in parent.edges if f"{to}_{src}" not in built}


def _zero_output(module: nn.Module) -> bool:
    """Set the scale and shift of ``module``'s last batch norm to zero: its output becomes exactly zero."""
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d) and m.affine]
    if not norms:
        return False
    with torch.no_grad():
        norms[-1].weight.zero_()
        norms[-1].bias.zero_()
    return True


def warm_start(model: nn.Module, path: Path) -> WarmStart:
    """Load what matches of the checkpoint at ``path`` into ``model`` (see the module docstring)."""
    result = WarmStart(source=str(path))
    try:
        state, described = read_checkpoint(path)
    except (OSError, ValueError) as exc:  # missing, or not a state dict: the message says which
        result.reason = str(exc)[:300] or type(exc).__name__
        return result
    except Exception as exc:  # torch.load of arbitrary bytes raises many types; none may fail the trial
        result.reason = f"{path} is not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]})"
        return result
    target = model.state_dict()
    result.total = len(target)
    params = dict(model.named_parameters())
    result.total_params = sum(p.numel() for p in params.values())
    loaded: dict[str, torch.Tensor] = {}
    for name, tensor in target.items():
        given = state.get(name)
        if given is None:
            continue
        if given.shape == tensor.shape:
            loaded[name] = given.to(tensor.dtype)
            result.copied += 1
        elif (resized := _resized_kernel(given, tensor)) is not None:
            loaded[name] = resized
            result.resized += 1
        else:
            continue
        if name in params:  # a resized kernel brings the parent's values only, not the padding
            result.copied_params += min(given.numel(), tensor.numel())
    if not loaded:
        result.reason = "no tensor of the checkpoint matches the network by name and shape"
        return result
    model.load_state_dict(loaded, strict=False)
    absent = _parent_absent_edges(described)
    if absent is not None:
        for name, module in model.named_modules():
            parts = name.split(".")
            if len(parts) < 2 or parts[-2] != "ops" or parts[-1] not in absent:
                continue
            if not any(k.startswith(name + ".") for k in state) and _zero_output(module):
                result.zeroed.append(name)
    return result

"""Augmentation policies as data: read from an architecture, resolved to torchvision calls, exported.

A searched policy arrives as decisions ``aug_<k>_<j>_op|prob|mag`` (docs/trial-contract.md); the bin
counts come from ``KUBENAS_SEARCH_SPACE``'s ``augmentation``. Each operation at a magnitude becomes a
:class:`Call`: the name of a ``torchvision.transforms.v2.functional`` function and its arguments,
worked out for the image size at hand, so an 8x8 digit is translated by at most 2 pixels where a
32x32 image moves by up to 10. The trainer (:mod:`kubenas_trainer.autoaugment`) and the exported
snippet both execute the same calls, which is why the export reproduces training exactly.

This module imports neither torch nor torchvision: it is plain data, usable where torch is absent.
The operation names come from the API model, so admission and the trainer agree on them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from kubenas.api.augment import AUGMENT_OPERATIONS, POLICY_FILE, SNIPPET_FILE
from kubenas_trainer.errors import BadCandidate

AUG_RE = re.compile(r"^aug_(\d+)_(\d+)_(op|prob|mag)$")
FORMAT = "kubenas.io/augment-policy/v1"

#: the operation names of ``spec.searchSpace.augmentation`` (one list, shared with the API's enum)
OPERATIONS: tuple[str, ...] = AUGMENT_OPERATIONS
#: the operations of torchvision's RandAugment and TrivialAugmentWide (no invert, no cutout)
RANDOM_OPERATIONS: tuple[str, ...] = tuple(op for op in OPERATIONS if op not in ("invert", "cutout"))
SIGNED = frozenset(
    {"shear_x", "shear_y", "translate_x", "translate_y", "rotate", "contrast", "color", "brightness", "sharpness"}
)
RANDOM_MAGNITUDE_BINS = 31
"""RandAugment's M and TrivialAugment's magnitudes are bins 0..30, as in torchvision."""


@dataclass(frozen=True)
class Ranges:
    """Largest magnitude of each kind of operation; translations and cutout are fractions of the image side."""

    shear: float = 0.3
    translate: float = 0.3
    rotate: float = 30.0
    enhance: float = 0.9
    posterize_bits: int = 4
    cutout: float = 0.5


STANDARD = Ranges()
"""AutoAugment's and RandAugment's ranges, except translation: 30 % of the side instead of 45 %, so a
digit that fills its canvas keeps most of itself on it."""
WIDE = Ranges(shear=0.99, translate=0.45, rotate=135.0, enhance=0.99, posterize_bits=6)
"""TrivialAugmentWide's ranges, translation again relative to the image (torchvision's 32 pixels would
move an 8x8 image off its canvas)."""


@dataclass(frozen=True)
class Call:
    """One torchvision v2 functional call: ``getattr(F, function)(image, **kwargs)``.

    ``erase`` is the exception: ``kwargs`` holds the patch ``size`` and the caller draws its position.
    """

    function: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    def arguments(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.kwargs}

    def to_json(self) -> dict[str, Any]:
        return {"function": self.function, "kwargs": self.arguments()}


#: resampling of rotations and shears: torchvision's default (nearest) duplicates and drops pixel rows, a
#: jagged pattern that small, smooth images (digits resized to 32x32) never show at test time
INTERPOLATION = "bilinear"


def _affine(angle: float = 0.0, translate: tuple[int, int] = (0, 0), shear: tuple[float, float] = (0.0, 0.0)) -> Call:
    return Call(
        "affine",
        (
            ("angle", angle),
            ("translate", translate),
            ("scale", 1.0),
            ("shear", shear),
            ("interpolation", INTERPOLATION),
        ),
    )


@lru_cache(maxsize=4096)
def resolve(
    operation: str, magnitude: float, sign: int, height: int, width: int, ranges: Ranges = STANDARD
) -> Call | None:
    """The call that applies ``operation`` at ``magnitude`` (a fraction of its largest) and ``sign`` (+1 or -1).

    None means the operation changes nothing at this magnitude (identity, a zero-pixel shift, ...).
    """
    m = min(1.0, max(0.0, float(magnitude)))
    s = 1 if sign >= 0 else -1
    if operation in ("shear_x", "shear_y"):
        degrees = round(math.degrees(math.atan(s * m * ranges.shear)), 4)
        if degrees == 0:
            return None
        return _affine(shear=(degrees, 0.0) if operation == "shear_x" else (0.0, degrees))
    if operation in ("translate_x", "translate_y"):
        side = width if operation == "translate_x" else height
        pixels = s * round(m * ranges.translate * side)
        if pixels == 0:
            return None
        return _affine(translate=(pixels, 0) if operation == "translate_x" else (0, pixels))
    if operation == "rotate":
        angle = round(s * m * ranges.rotate, 4)
        return Call("rotate", (("angle", angle), ("interpolation", INTERPOLATION))) if angle else None
    enhance = {
        "brightness": ("adjust_brightness", "brightness_factor"),
        "color": ("adjust_saturation", "saturation_factor"),
        "contrast": ("adjust_contrast", "contrast_factor"),
        "sharpness": ("adjust_sharpness", "sharpness_factor"),
    }
    if operation in enhance:
        factor = round(1.0 + s * m * ranges.enhance, 4)
        function, argument = enhance[operation]
        return Call(function, ((argument, factor),)) if factor != 1.0 else None
    if operation == "posterize":
        bits = 8 - round(m * ranges.posterize_bits)
        return Call("posterize", (("bits", bits),)) if bits < 8 else None
    if operation == "solarize":
        return Call("solarize", (("threshold", round(1.0 - m, 4)),)) if m > 0 else None
    if operation in ("auto_contrast", "equalize", "invert"):
        return Call("autocontrast" if operation == "auto_contrast" else operation)
    if operation == "cutout":
        size = round(m * ranges.cutout * min(height, width))
        return Call("erase", (("size", size),)) if size > 0 else None
    if operation == "identity":
        return None
    raise ValueError(f"unknown augmentation operation {operation!r} (known: {', '.join(OPERATIONS)})")


@dataclass(frozen=True)
class Step:
    """One operation of a sub-policy: applied with ``probability`` at ``magnitude`` (a fraction of its largest)."""

    operation: str
    probability: float
    magnitude: float

    def calls(self, height: int, width: int) -> tuple[Call | None, Call | None]:
        """The call for a positive and for a negative sign (the same one for unsigned operations)."""
        positive = resolve(self.operation, self.magnitude, 1, height, width)
        return positive, resolve(self.operation, self.magnitude, -1, height, width)


@dataclass(frozen=True)
class Policy:
    """Sub-policies of steps; one sub-policy is drawn per image and its steps applied in turn."""

    sub_policies: tuple[tuple[Step, ...], ...]
    bins: Mapping[str, int] = field(default_factory=dict)

    def to_json(self, height: int, width: int) -> dict[str, Any]:
        """The exported form: each step with its resolved torchvision calls for this image size."""
        subs = []
        for sub in self.sub_policies:
            steps = []
            for step in sub:
                calls = [c.to_json() for c in dict.fromkeys(step.calls(height, width)) if c is not None]
                steps.append(
                    {
                        "operation": step.operation,
                        "probability": step.probability,
                        "magnitude": step.magnitude,
                        "calls": calls,
                    }
                )
            subs.append(steps)
        return {"format": FORMAT, "imageSize": [height, width], "subPolicies": subs, **dict(self.bins)}


def _bins(search_space: Mapping[str, Any] | None) -> tuple[int, int]:
    family = (search_space or {}).get("augmentation")
    family = family if isinstance(family, Mapping) else {}
    out = []
    for key, default in (("probabilityBins", 11), ("magnitudeBins", 10)):
        value = family.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise BadCandidate(f"searchSpace.augmentation.{key}", f"must be an integer of at least 2, got {value!r}")
        out.append(value)
    return out[0], out[1]


def parse_policy(architecture: Mapping[str, Any], search_space: Mapping[str, Any] | None = None) -> Policy | None:
    """The policy held by ``aug_*`` decisions, or None when there are none; BadCandidate names a bad decision."""
    slots: dict[tuple[int, int], dict[str, Any]] = {}
    for name, value in architecture.items():
        if m := AUG_RE.match(name):
            slots.setdefault((int(m.group(1)), int(m.group(2))), {})[m.group(3)] = (name, value)
    if not slots:
        return None
    p_bins, m_bins = _bins(search_space)
    count = max(k for k, _ in slots) + 1
    per_sub = max(j for _, j in slots) + 1
    subs: list[tuple[Step, ...]] = []
    for k in range(count):
        steps = []
        for j in range(per_sub):
            slot = slots.get((k, j), {})
            for part in ("op", "prob", "mag"):
                if part not in slot:
                    raise BadCandidate(f"architecture.aug_{k}_{j}_{part}", "is missing")
            op_name, op = slot["op"]
            if op not in OPERATIONS:
                raise BadCandidate(
                    f"architecture.{op_name}", f"unknown operation {op!r} (known: {', '.join(OPERATIONS)})"
                )
            p = _bin(slot["prob"], p_bins)
            mag = _bin(slot["mag"], m_bins)
            steps.append(Step(op, round(p / (p_bins - 1), 6), round(mag / (m_bins - 1), 6)))
        subs.append(tuple(steps))
    return Policy(tuple(subs), {"probabilityBins": p_bins, "magnitudeBins": m_bins})


def _bin(entry: tuple[str, Any], bins: int) -> int:
    name, value = entry
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < bins:
        raise BadCandidate(f"architecture.{name}", f"must be a bin index from 0 to {bins - 1}, got {value!r}")
    return value


SNIPPET = '''"""Apply the augmentation policy in augment_policy.json with torchvision (exported by Kubenas).

    policy = json.load(open("augment_policy.json"))
    image = apply_policy(image, policy)   # image: a C x H x W float tensor in [0, 1], one image

The magnitudes were resolved for the image size in policy["imageSize"].
"""

import json
import random

import torch
from torchvision.transforms.v2 import functional as F


def apply_policy(image: torch.Tensor, policy: dict, rng: random.Random | None = None) -> torch.Tensor:
    rng = rng or random.Random()
    for step in rng.choice(policy["subPolicies"]):
        if not step["calls"] or rng.random() >= step["probability"]:
            continue
        call = rng.choice(step["calls"])
        kwargs = dict(call["kwargs"])
        if call["function"] == "erase":
            size = kwargs.pop("size")
            top, left = rng.randint(0, image.shape[-2] - size), rng.randint(0, image.shape[-1] - size)
            kwargs = {"i": top, "j": left, "h": size, "w": size, "v": torch.zeros(())}
        image = getattr(F, call["function"])(image, **kwargs)
    return image


if __name__ == "__main__":
    with open("augment_policy.json") as fh:
        policy = json.load(fh)
    print(apply_policy(torch.rand(1, *policy["imageSize"]), policy).shape)
'''


def write_export(directory: Path, policy: Policy, height: int, width: int) -> list[Path]:
    """Write ``augment_policy.json`` and the ``augment_policy.py`` snippet that applies it; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / POLICY_FILE
    target.write_text(json.dumps(policy.to_json(height, width), indent=2) + "\n")
    snippet = directory / SNIPPET_FILE
    snippet.write_text(SNIPPET)
    return [target, snippet]

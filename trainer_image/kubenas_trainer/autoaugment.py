"""Augmentation policies applied to whole batches with torchvision's v2 functional operations.

Every image gets its own draws (its sub-policy, whether each step fires, the sign of signed
operations, RandAugment's and TrivialAugment's operations and magnitudes), all from the trainer's
augmentation generator, so a trial seed fixes them. Images that drew the same call are then
transformed together: one torchvision call per distinct (operation, magnitude, sign) in the batch
rather than one per image, which keeps a Python loop over small images from dominating a CPU step.

Images are handled as floats in [0, 1] (see ``Dataset.to_unit``); geometric operations fill with 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import functional as F

from kubenas_trainer.errors import SettingsError
from kubenas_trainer.policy import (
    RANDOM_MAGNITUDE_BINS,
    RANDOM_OPERATIONS,
    STANDARD,
    WIDE,
    Call,
    Policy,
    resolve,
)
from kubenas_trainer.settings import Settings

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def apply_call(x: torch.Tensor, call: Call, generator: torch.Generator) -> torch.Tensor:
    """``call`` on a batch (N x C x H x W in [0, 1]); an ``erase`` patch lies at a random place per image."""
    if call.function != "erase":
        return getattr(F, call.function)(x, **call.arguments())
    size = int(call.arguments()["size"])
    n, _, h, w = x.shape
    top = torch.randint(0, h - size + 1, (n, 1, 1), device=x.device, generator=generator)
    left = torch.randint(0, w - size + 1, (n, 1, 1), device=x.device, generator=generator)
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return x.masked_fill(inside[:, None], 0.0)


def apply_grouped(
    x: torch.Tensor, keys: torch.Tensor, call_of: Callable[[int], Call | None], generator: torch.Generator
) -> torch.Tensor:
    """Apply ``call_of(key)`` to the images holding ``key`` (negative keys: leave the image alone).

    Keys that resolve to the same call (an unsigned operation under either sign, two magnitudes that
    round to the same pixel shift) form one group. Groups go in the order of their smallest key, so
    the result depends only on the draws.
    """
    groups: dict[Call, list[int]] = {}
    for key in torch.unique(keys[keys >= 0]).tolist():
        call = call_of(int(key))
        if call is not None:
            groups.setdefault(call, []).append(int(key))
    if not groups:
        return x
    out = x.clone()
    for call, members in groups.items():
        idx = torch.isin(keys, torch.tensor(members, device=keys.device)).nonzero().squeeze(1)
        out[idx] = apply_call(out[idx], call, generator).clamp_(0.0, 1.0)
    return out


@dataclass(frozen=True)
class PolicyAugment:
    """A searched (AutoAugment) policy: one sub-policy drawn per image, its steps applied in turn."""

    policy: Policy

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        subs = self.policy.sub_policies
        device = x.device
        chosen = torch.randint(0, len(subs), (n,), device=device, generator=generator)
        for j in range(len(subs[0])):
            fires = torch.rand(n, device=device, generator=generator)
            sign = torch.randint(0, 2, (n,), device=device, generator=generator)
            prob = torch.tensor([sub[j].probability for sub in subs], device=device)
            keys = torch.where(fires < prob[chosen], chosen * 2 + sign, -1)
            calls = [subs[k][j].calls(h, w) for k in range(len(subs))]
            x = apply_grouped(x, keys, lambda key, calls=calls: calls[key // 2][key % 2], generator)
        return x


@dataclass(frozen=True)
class RandAugment:
    """RandAugment(N, M): ``n`` operations drawn per image, all at magnitude bin ``m`` of 0..30."""

    n: int
    m: int

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        size, _, h, w = x.shape
        magnitude = self.m / (RANDOM_MAGNITUDE_BINS - 1)
        for _ in range(self.n):
            op = torch.randint(0, len(RANDOM_OPERATIONS), (size,), device=x.device, generator=generator)
            sign = torch.randint(0, 2, (size,), device=x.device, generator=generator)
            x = apply_grouped(
                x,
                op * 2 + sign,
                lambda key: resolve(RANDOM_OPERATIONS[key // 2], magnitude, 1 - 2 * (key % 2), h, w, STANDARD),
                generator,
            )
        return x


@dataclass(frozen=True)
class TrivialAugmentWide:
    """TrivialAugmentWide: one operation per image at a magnitude bin drawn uniformly from 0..30, wide ranges."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        size, _, h, w = x.shape
        bins = RANDOM_MAGNITUDE_BINS
        op = torch.randint(0, len(RANDOM_OPERATIONS), (size,), device=x.device, generator=generator)
        level = torch.randint(0, bins, (size,), device=x.device, generator=generator)
        sign = torch.randint(0, 2, (size,), device=x.device, generator=generator)

        def call_of(key: int) -> Call | None:
            rest, s = divmod(key, 2)
            o, b = divmod(rest, bins)
            return resolve(RANDOM_OPERATIONS[o], b / (bins - 1), 1 - 2 * s, h, w, WIDE)

        return apply_grouped(x, (op * bins + level) * 2 + sign, call_of, generator)


def choose_augment(settings: Settings, policy: Policy | None, dataset: str, unit_range: bool) -> Augment | None:
    """What the trial applies: its searched ``policy``, the fixed policy the settings name, or nothing.

    A searched policy together with a named fixed one is refused rather than silently preferring one,
    and so is any policy on data that is not images in [0, 1] (tables, the ``synthetic`` set), where
    brightness or rotation mean nothing.
    """
    name = settings.augment_policy
    if policy is not None and name not in ("auto",):
        raise SettingsError(
            settings.spelled("augment_policy"),
            f"is {name!r} but the architecture holds a searched policy (aug_* decisions)",
        )
    augment: Augment | None = None
    if policy is not None:
        augment = PolicyAugment(policy)
    elif name == "randaugment":
        augment = RandAugment(settings.randaugment_n, settings.randaugment_m)
    elif name == "trivialaugment":
        augment = TrivialAugmentWide()
    if augment is not None and not unit_range:
        field = "architecture" if policy is not None else settings.spelled("augment_policy")
        raise SettingsError(field, f"augmentation policies need images in [0, 1]; dataset {dataset!r} is not")
    return augment

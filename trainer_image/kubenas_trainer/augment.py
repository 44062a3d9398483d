"""Batch augmentation on the device: random crop from a padded image and a random horizontal flip.

Done on whole batches with index arithmetic instead of per-image transforms, so it costs one gather
per step on the GPU and never sends images back to the host.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to ``pad`` pixels (zero fill, i.e. the mean after normalisation), maybe mirrored."""
    b, c, h, w = x.shape
    device = x.device
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), device=device, generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (b,), device=device, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=device))[:, None, None, :]
        batch = torch.arange(b, device=device)[:, None, None, None]
        chans = torch.arange(c, device=device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    if flip:
        mirror = torch.rand(b, device=device, generator=generator) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(3), x)
    return x

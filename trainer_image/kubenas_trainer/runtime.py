"""Where and how torch runs: device choice, threads, seeds and determinism.

Seeding happens before the network is built, because initial weights come from torch's global
generator; everything random after that (shuffling, augmentation) uses generators owned by the
trainer, so the same seed gives the same run on CPU.

The CPU kernels the trainer uses (convolutions, pooling, batch norm, index gathers) are deterministic
for a given thread count, so ``torch.use_deterministic_algorithms`` is set on CUDA only: the call
imports the compiler stack, which costs over two seconds per trial.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from kubenas_trainer.errors import SettingsError
from kubenas_trainer.settings import Settings


def pick_device(settings: Settings) -> torch.device:
    """CUDA when asked or when ``auto`` finds one, else CPU; asking for an absent GPU is an error."""
    if settings.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(settings.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(
                settings.spelled("device"), f"{settings.device} was asked for but no CUDA device is visible"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingsError(settings.spelled("device"), f"{settings.device} does not exist")
    return device


def is_deterministic(settings: Settings, device: torch.device) -> bool:
    return settings.deterministic if settings.deterministic is not None else device.type == "cpu"


def configure(settings: Settings, seed: int, device: torch.device) -> None:
    """Threads, seeds and kernel choice for this trial."""
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type != "cuda":
        return
    deterministic = is_deterministic(settings, device)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.use_deterministic_algorithms(deterministic, warn_only=True)

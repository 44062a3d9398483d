"""What a network costs: parameters, FLOPs per sample, and inference latency on the device used.

These are the metrics that objective constraints bound (``params``, ``flops``, ``latency_ms``), so they
must mean the same thing for every candidate: FLOPs are 2 x the multiply-accumulates of convolutions
and linear layers (NAS papers' "FLOPs" are usually the MACs, half this; pooling, BN and activations
are not counted), for one sample, in evaluation mode.

They are counted with forward hooks on convolutions and linear layers, with the same formulas as
PyTorch's ``FlopCounterMode`` (the tests hold the two equal): that mode costs seconds on first use,
which every short trial would pay.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _layer_flops(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return 2 * output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return 2 * output.numel() * module.in_features
    return 0


def count_flops(model: nn.Module, sample_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one sample of ``sample_shape`` (C, H, W), measured on a CPU copy.

    A copy keeps the caller's model, its device and its BN statistics untouched.
    """
    probe = copy.deepcopy(model).to("cpu").eval()
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += _layer_flops(module, output)

    handles = [m.register_forward_hook(hook) for m in probe.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            probe(torch.zeros(1, *sample_shape))
    finally:
        for handle in handles:
            handle.remove()
    return total


def measure_latency_ms(
    model: nn.Module,
    sample: torch.Tensor,
    runs: int = 20,
    warmup: int = 3,
    autocast: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> float:
    """Median wall time in ms of one forward pass on ``sample`` (batch 1) with the device synchronised.

    The median, not the mean, so one scheduler hiccup on a shared machine does not move the figure.
    """
    was_training = model.training
    model.eval()
    sync = torch.cuda.synchronize if sample.device.type == "cuda" else (lambda: None)
    times: list[float] = []
    with torch.inference_mode(), autocast():
        for i in range(warmup + max(1, runs)):
            sync()
            start = time.perf_counter()
            model(sample)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    model.train(was_training)
    return statistics.median(times)

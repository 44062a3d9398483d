"""Trainer overhead against a hand-written minimal PyTorch loop, and what a ResNet-like cell reaches on digits.

Both loops train the same network (same initial weights) on the same resident digits tensors with the
same optimiser, schedule, batch size and epochs, in one process, and do one validation pass at the end.
A third variant is the trainer validating after every epoch, as it does by default; a fourth runs the
minimal loop again, an A/A control whose ratio to the minimal loop shows the noise floor of the
machine. Each round runs the four once, rotating which goes first, so drift on a shared machine falls
on all of them; two warm-up rounds are not recorded.

Wall time on a shared machine swings with other jobs, so each ratio is given four ways: by median wall
time, by the fastest run of each (the usual estimate of intrinsic cost under noise), by median CPU time
of the process (with one torch thread: the work itself, not the wait for a core) and as the median of
per-round ratios. Because even the A/A control swings by several per cent there, the per-step figures
time the bookkeeping each loop does around a step in isolation, where noise cannot hide a few per cent.
The last run trains the same cell for ``--budget-epochs`` with the trainer's defaults and reports the
validation accuracy reached.

    python benchmarks/trainer_overhead.py [--repeats 12] [--epochs 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kubenas_trainer.candidate import RESNET_CELL, parse_candidate
from kubenas_trainer.data import Dataset, load_dataset
from kubenas_trainer.model import MacroConfig, build_network
from kubenas_trainer.settings import Settings
from kubenas_trainer.train import Trainer, lr_at, param_groups

CPU = torch.device("cpu")


def fresh_model(settings: Settings, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    macro = MacroConfig(1, 10, settings.width, settings.stages, settings.cells_per_stage)
    return build_network(parse_candidate(RESNET_CELL), macro)


Timing = tuple[float, float]
"""Wall seconds and CPU seconds of this process."""


def clock() -> Timing:
    return time.perf_counter(), time.process_time()


def since(start: Timing) -> Timing:
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


def minimal_loop(model: nn.Module, data: Dataset, settings: Settings, seed: int) -> tuple[Timing, float]:
    """The loop anyone would write: shuffle, forward, loss, backward, step, cosine schedule; one final eval."""
    start = clock()
    opt = torch.optim.SGD(
        param_groups(model, settings.weight_decay), lr=settings.lr, momentum=settings.momentum, nesterov=True
    )
    n, bs = len(data.y_train), settings.batch_size
    steps = settings.epochs * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(settings.epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            out = model(data.x_train[idx])
            loss = F.cross_entropy(out, data.y_train[idx], label_smoothing=settings.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(data.x_val).argmax(1) == data.y_val).float().mean().item()
    return since(start), accuracy


def trainer_loop(model: nn.Module, data: Dataset, settings: Settings, seed: int) -> tuple[Timing, float, float]:
    """The trainer's loop; returns its timing, final accuracy and training samples/s."""
    start = clock()
    fit = Trainer(model, data, settings, CPU, seed).fit()
    return since(start), fit.final.accuracy, fit.samples_per_second


def ratios(ours: list[Timing], theirs: list[Timing]) -> dict[str, float]:
    """Trainer / minimal by median wall time, by fastest wall time, by median CPU time and per pair (median)."""
    wall_a, wall_b = [t[0] for t in ours], [t[0] for t in theirs]
    cpu_a, cpu_b = [t[1] for t in ours], [t[1] for t in theirs]
    return {
        "trainer_median_wall_s": statistics.median(wall_a),
        "minimal_median_wall_s": statistics.median(wall_b),
        "ratio_median_wall": statistics.median(wall_a) / statistics.median(wall_b),
        "ratio_min_wall": min(wall_a) / min(wall_b),
        "ratio_median_cpu": statistics.median(cpu_a) / statistics.median(cpu_b),
        "ratio_paired_median_wall": statistics.median(a / b for a, b in zip(wall_a, wall_b, strict=True)),
    }


def fastest(fn: Callable[[], object], calls: int, repeats: int = 7) -> float:
    """Seconds per call of ``fn``: the fastest of ``repeats`` timings of ``calls`` calls (load only adds time)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def per_step_costs(settings: Settings, data: Dataset, seed: int) -> dict[str, float]:
    """What one training step costs, and what each loop does around it, timed in isolation.

    Whole-run timings on a loaded machine swing by more than the effect sought; a few microseconds of
    bookkeeping timed thousands of times do not. ``trainer_extras`` mirrors what ``Trainer.fit`` does per
    step besides forward, loss, backward and step; ``minimal_extras`` what the minimal loop does.
    """
    model = fresh_model(settings, seed)
    trainer = Trainer(model, data, settings, CPU, seed)
    idx = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(seed))[: settings.batch_size]
    target = data.y_train[idx]
    out = model(data.x_train[idx]).detach()
    loss = F.cross_entropy(out, target)
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.long)

    def trainer_extras() -> None:
        nonlocal loss_sum, correct
        trainer.stop.reason()
        lr = lr_at(7, 100, settings, 10)
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        trainer.network_input(data.x_train[idx], train=True)
        loss_sum += loss.detach() * len(idx)
        correct += (out.detach().argmax(1) == target).sum()

    plain = torch.optim.SGD(fresh_model(settings, seed).parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(plain, T_max=10**9)
    plain.step()

    def minimal_extras() -> None:
        data.x_train[idx]
        sched.step()

    def step() -> None:
        loss = trainer.criterion(trainer.model(data.x_train[idx]), target)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()

    step_s = fastest(step, 5)
    ours, theirs = fastest(trainer_extras, 2000), fastest(minimal_extras, 2000)
    return {
        "step_ms": step_s * 1e3,
        "trainer_extras_us": ours * 1e6,
        "minimal_extras_us": theirs * 1e6,
        "ratio_per_step": (step_s + ours) / (step_s + theirs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=12, help="rounds; each runs every variant once")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per overhead run")
    parser.add_argument("--budget-epochs", type=int, default=10, help="epochs of the accuracy run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base: dict[str, Any] = {"dataset": "digits", "width": 16, "stages": 3, "cells_per_stage": 1, "batch_size": 64}
    variants = {
        "trainer": Settings.model_validate({**base, "epochs": args.epochs, "eval_every": 0}),
        "trainer_eval_each_epoch": Settings.model_validate({**base, "epochs": args.epochs, "eval_every": 1}),
        "minimal": Settings.model_validate({**base, "epochs": args.epochs, "eval_every": 0}),
        "minimal_again": Settings.model_validate({**base, "epochs": args.epochs, "eval_every": 0}),
    }
    data = load_dataset(variants["minimal"])
    seed = 0
    timings: dict[str, list[Timing]] = {name: [] for name in variants}
    rates: list[float] = []
    names = list(variants)
    for r in range(-2, args.repeats):  # two warm-up rounds (allocator, oneDNN primitives), not recorded
        for which in names[r % len(names) :] + names[: r % len(names)]:  # rotate who goes first
            settings = variants[which]
            model = fresh_model(settings, seed)
            if which.startswith("minimal"):
                timing = minimal_loop(model, data, settings, seed)[0]
            else:
                timing, _, rate = trainer_loop(model, data, settings, seed)
                rates += [rate] if which == "trainer" and r >= 0 else []
            if r >= 0:
                timings[which].append(timing)

    budget = Settings.model_validate({**base, "epochs": args.budget_epochs})
    (budget_seconds, _), budget_accuracy, budget_rate = trainer_loop(fresh_model(budget, seed), data, budget, seed)

    steps = per_step_costs(variants["trainer"], data, seed)
    overhead = ratios(timings["trainer"], timings["minimal"])
    with_eval = ratios(timings["trainer_eval_each_epoch"], timings["minimal"])
    control = ratios(timings["minimal_again"], timings["minimal"])
    figures = {
        "threads": args.threads,
        "epochs_per_run": args.epochs,
        "repeats": args.repeats,
        "train_samples": len(data.y_train),
        **{f"overhead_{k}": v for k, v in overhead.items()},
        **{f"per_step_{k}": v for k, v in steps.items()},
        "trainer_samples_per_s": statistics.median(rates),
        **{f"eval_each_epoch_{k}": v for k, v in with_eval.items() if k.startswith("ratio")},
        **{f"noise_floor_minimal_vs_itself_{k}": v for k, v in control.items() if k.startswith("ratio")},
        "budget_epochs": args.budget_epochs,
        "budget_seconds": budget_seconds,
        "budget_val_accuracy": budget_accuracy,
        "budget_samples_per_s": budget_rate,
    }
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

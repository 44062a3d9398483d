"""``kubenas bench augment``: a searched augmentation policy against none, RandAugment and TrivialAugment.

The protocol keeps the comparison honest. The data is split three ways by a fixed seed: ``train``,
``val`` (what the search and the choice of the RandAugment cell look at) and ``test`` (what every
reported figure is measured on and nothing is chosen by). Each arm is trained from scratch with the
same small network and settings under ``seeds`` trial seeds:

- ``none``: no augmentation;
- ``randaugment_best``: every cell of a small N x M grid, the cell with the best mean validation
  accuracy reported (choosing on test would flatter it);
- ``trivialaugment``: TrivialAugmentWide, nothing to tune;
- ``searched``: a strategy searches ``spec.searchSpace.augmentation`` for ``search_trials`` trials
  (one seed each, on the proxy budget of ``search_epochs``), the best policy by validation accuracy
  is retrained under every seed.

A difference counts as a win only beyond two seed standard deviations (of the larger of the two
arms). Runs execute in-process with the trainer's own ``Trainer``, one torch thread each, ``jobs``
worker processes at a time. This module is imported only by the command: it needs torch.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import typer

RA_GRID_N = (1, 2)
RA_GRID_M = (5, 10)


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark runs: data, network and optimisation settings, arms' budgets."""

    dataset: str = "digits"
    image_size: int = 32
    seeds: int = 5
    epochs: int = 6
    search_epochs: int = 3
    search_trials: int = 10
    strategy: str = "tpe"
    sub_policies: int = 5
    jobs: int = 1
    samples: int = 1800
    settings: Mapping[str, Any] = field(
        default_factory=lambda: {
            "batch_size": 64,
            "lr": 0.1,
            "width": 8,
            "stages": 3,
            "cells_per_stage": 1,
            "weight_decay": 5e-4,
            "label_smoothing": 0.1,
            "augment": False,
            "eval_every": 0,
            "threads": 1,
            "device": "cpu",
        }
    )

    def trainer_settings(self, epochs: int, **extra: Any) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "image_size": self.image_size,
            "synthetic_samples": self.samples,
            "val_fraction": 0.4,
            "epochs": epochs,
            **self.settings,
            **extra,
        }


@dataclass(frozen=True)
class Run:
    """One training run: settings, an optional searched architecture (``aug_*`` decisions), a seed."""

    settings: Mapping[str, Any]
    seed: int
    architecture: Mapping[str, Any] = field(default_factory=dict)
    search_space: Mapping[str, Any] | None = None


def _splits(settings: Any) -> tuple[Any, Any]:
    """The dataset split train / val / test: the trainer's validation share halved, class by class."""
    from kubenas_trainer.data import load_dataset, stratified_split

    data = load_dataset(settings)
    y = data.y_val.numpy()
    test_idx, val_idx = stratified_split(y, 0.5, settings.split_seed + 1)
    val = replace(data, x_val=data.x_val[val_idx], y_val=data.y_val[val_idx])
    test = replace(data, x_val=data.x_val[test_idx], y_val=data.y_val[test_idx])
    return val, test


_DATA_CACHE: dict[str, tuple[Any, Any]] = {}


def train_once(run: Run) -> tuple[float, float]:
    """Validation and test accuracy of one run (in a worker process: data is cached per process)."""
    import torch

    from kubenas_trainer.autoaugment import choose_augment
    from kubenas_trainer.candidate import Candidate
    from kubenas_trainer.model import MacroConfig, build_network
    from kubenas_trainer.policy import parse_policy
    from kubenas_trainer.runtime import configure
    from kubenas_trainer.settings import resolve_settings
    from kubenas_trainer.train import Trainer

    settings, _ = resolve_settings(run.settings, {})
    key = repr(sorted((k, v) for k, v in run.settings.items() if k in ("dataset", "image_size", "synthetic_samples")))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = _splits(settings)
    val, test = _DATA_CACHE[key]
    device = torch.device("cpu")
    configure(settings, run.seed, device)
    policy = parse_policy(run.architecture, run.search_space)
    augment = choose_augment(settings, policy, settings.dataset, val.unit_range)
    macro = MacroConfig.from_settings(settings, val.sample_shape[0], val.num_classes)
    trainer = Trainer(build_network(Candidate(), macro), val, settings, device, run.seed, augment=augment)
    fit = trainer.fit()
    trainer.data = test
    return fit.final.accuracy, trainer.evaluate().accuracy


def _map(runs: Sequence[Run], jobs: int) -> list[tuple[float, float]]:
    if jobs <= 1 or len(runs) <= 1:
        return [train_once(r) for r in runs]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(train_once, runs))


def stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation, in percent, with the values themselves."""
    pct = [100.0 * v for v in values]
    return {
        "mean": round(statistics.fmean(pct), 3),
        "std": round(statistics.stdev(pct), 3) if len(pct) > 1 else 0.0,
        "values": [round(v, 3) for v in pct],
    }


def beats(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether ``a`` is ahead of ``b`` by more than two seed standard deviations (the larger of the two)."""
    return a["mean"] - b["mean"] > 2 * max(a["std"], b["std"])


def run_benchmark(config: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every arm, the search and the verdicts, as the JSON ``kubenas bench augment --json`` writes."""
    from kubenas.api.augment import AugmentationSpace
    from kubenas.api.space import SearchSpaceSpec
    from kubenas.api.strategy import StrategySpec
    from kubenas.core.augment import operation_frequencies, policy_of
    from kubenas.core.space import build_space
    from kubenas.core.strategies import Observation, make_strategy

    started = time.perf_counter()
    seeds = range(config.seeds)
    full = config.trainer_settings(config.epochs)

    def arm(name: str, settings: Mapping[str, Any], **kw: Any) -> list[tuple[float, float]]:
        t0 = time.perf_counter()
        out = _map([Run(settings, 1000 + s, **kw) for s in seeds], config.jobs)
        test = stats([t for _, t in out])
        log(f"{name}: test {test['mean']:.2f} ± {test['std']:.2f} % ({time.perf_counter() - t0:.0f} s)")
        return out

    result: dict[str, Any] = {}
    result["none"] = stats([t for _, t in arm("none", {**full, "augment_policy": "none"})])

    grid: dict[str, Any] = {}
    for n, m in itertools.product(RA_GRID_N, RA_GRID_M):
        out = arm(
            f"randaugment N={n} M={m}",
            {**full, "augment_policy": "randaugment", "randaugment_n": n, "randaugment_m": m},
        )
        grid[f"N={n},M={m}"] = {"n": n, "m": m, "val": stats([v for v, _ in out]), "test": stats([t for _, t in out])}
    best_cell = max(grid.values(), key=lambda c: c["val"]["mean"])
    result["randaugment_best"] = {**best_cell["test"], "n": best_cell["n"], "m": best_cell["m"]}
    result["randaugment_grid"] = grid
    result["trivialaugment"] = stats(
        [t for _, t in arm("trivialaugment", {**full, "augment_policy": "trivialaugment"})]
    )

    # the search: one seed per trial, proxy epochs, validation accuracy as the reward
    spec = SearchSpaceSpec(augmentation=AugmentationSpace(sub_policies=config.sub_policies))
    space = build_space(spec)
    wire = spec.to_wire()
    strategy = make_strategy(StrategySpec.model_validate({"name": config.strategy, "seed": 0}), space)
    proxy = config.trainer_settings(config.search_epochs)
    trials: list[tuple[dict[str, Any], float]] = []
    t0 = time.perf_counter()
    while len(trials) < config.search_trials:
        batch = [strategy.ask() for _ in range(min(config.jobs, config.search_trials - len(trials)))]
        first = strategy.asked - len(batch)
        out = _map([Run(proxy, 0, a, wire) for a in batch], config.jobs)
        for i, (arch, (val, _)) in enumerate(zip(batch, out, strict=True)):
            strategy.tell(first + i, arch, Observation(reward=100.0 * val))
            trials.append((dict(arch), val))
    log(f"search: {config.search_trials} trials with {config.strategy} ({time.perf_counter() - t0:.0f} s)")
    ranked = sorted(trials, key=lambda t: -t[1])
    family = space.families["augmentation"]
    best_arch = ranked[0][0]
    result["searched"] = stats([t for _, t in arm("searched", full, architecture=best_arch, search_space=wire)])
    result["searched"]["policy"] = policy_of(best_arch, family)
    result["searched"]["search_val_accuracy"] = round(100.0 * ranked[0][1], 3)
    result["search_trials"] = config.search_trials
    top = [policy_of(a, family) for a, _ in ranked[: max(1, len(ranked) // 4)]]
    result["operation_frequencies"] = {
        "best_policy": operation_frequencies([result["searched"]["policy"]]),
        "top_quarter": operation_frequencies(top),
        "top_quarter_weighted_by_probability": operation_frequencies(top, weighted=True),
    }
    result["wins"] = {
        "searched_beats_none": beats(result["searched"], result["none"]),
        "searched_beats_randaugment_best": beats(result["searched"], result["randaugment_best"]),
        "randaugment_best_beats_searched": beats(result["randaugment_best"], result["searched"]),
        "trivialaugment_beats_none": beats(result["trivialaugment"], result["none"]),
        "randaugment_best_beats_none": beats(result["randaugment_best"], result["none"]),
    }
    result["config"] = {
        "dataset": config.dataset,
        "image_size": config.image_size,
        "seeds": config.seeds,
        "epochs": config.epochs,
        "search_epochs": config.search_epochs,
        "strategy": config.strategy,
        "sub_policies": config.sub_policies,
        "randaugment_grid": {"n": list(RA_GRID_N), "m": list(RA_GRID_M)},
        "settings": dict(config.settings),
        "metric": "test accuracy, % (val split for every choice)",
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def command(
    json_out: Path | None = typer.Option(None, "--json", dir_okay=False, help="Also write the result JSON here."),
    dataset: str = typer.Option("digits", "--dataset", help="digits (resized) or shapes (generated)."),
    image_size: int = typer.Option(32, "--image-size", min=8, max=128, help="Image side in pixels."),
    seeds: int = typer.Option(5, "--seeds", min=2, help="Trial seeds per arm."),
    epochs: int = typer.Option(6, "--epochs", min=1, help="Epochs of every reported run."),
    search_epochs: int = typer.Option(3, "--search-epochs", min=1, help="Epochs of a search trial (the proxy)."),
    search_trials: int = typer.Option(10, "--search-trials", min=1, help="Policies the search tries."),
    strategy: str = typer.Option("tpe", "--strategy", help="Search strategy over the policy space."),
    sub_policies: int = typer.Option(5, "--sub-policies", min=1, max=16, help="Sub-policies of a searched policy."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes (one torch thread each)."),
) -> None:
    """No augmentation, the best RandAugment cell, TrivialAugmentWide and a searched policy, on test accuracy."""
    import json

    from kubenas.api.strategy import STRATEGY_NAMES

    if strategy not in STRATEGY_NAMES:
        raise typer.BadParameter(f"{strategy!r} is not one of {', '.join(STRATEGY_NAMES)}", param_hint="--strategy")
    if dataset not in ("digits", "shapes"):
        raise typer.BadParameter("must be digits or shapes", param_hint="--dataset")
    config = BenchConfig(
        dataset=dataset,
        image_size=image_size,
        seeds=seeds,
        epochs=epochs,
        search_epochs=search_epochs,
        search_trials=search_trials,
        strategy=strategy,
        sub_policies=sub_policies,
        jobs=jobs,
    )
    result = run_benchmark(config, typer.echo)
    summary = {k: result[k] for k in ("none", "randaugment_best", "trivialaugment", "searched")}
    for name, arm in summary.items():
        typer.echo(f"{name:>18}: {arm['mean']:.2f} ± {arm['std']:.2f} %")
    typer.echo(f"wins (beyond 2 std): {json.dumps(result['wins'])}")
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2) + "\n")

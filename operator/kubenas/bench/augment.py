"""``kubenas bench augment``: a searched augmentation policy against none, RandAugment and TrivialAugment.

The regime is AutoAugment's: data-limited training run to convergence, where a network without
augmentation fits its few training images perfectly and overfits. Every arm trains the same small
network from scratch on ``train_per_class`` images per class (a fixed draw), for enough epochs that
"none" reaches 100 % training accuracy long before the end; the clean training accuracy of every arm
is reported next to its test accuracy, so the gap shows whether that held.

The data is split three ways by a fixed seed: the training pool (the training images are drawn from
it), ``val`` (what the search and the choice of the RandAugment cell look at) and ``test`` (what every
reported figure is measured on and nothing is chosen by). The arms, each under ``seeds`` trial seeds:

- ``none``: no augmentation;
- ``randaugment_best``: every cell of a small N x M grid, the cell with the best mean validation
  accuracy reported (choosing on test would flatter it);
- ``trivialaugment``: TrivialAugmentWide, nothing to tune;
- ``searched``: a strategy searches ``spec.searchSpace.augmentation`` on a proxy, as AutoAugment does:
  ``search_trials`` trials of one seed each on a reduced training set (``search_per_class`` images per
  class, a subset of the training images), rewarded with validation accuracy. The ``combine`` best
  policies are joined into one (AutoAugment joins its best five), which is trained under every seed
  with the full settings.

A difference counts as a win only beyond two seed standard deviations (of the larger of the two
arms). Runs execute in-process with the trainer's own ``Trainer``, one torch thread each, ``jobs``
worker processes at a time. This module is imported only by the command: it needs torch.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import typer

from kubenas.api.augment import AUGMENT_OPERATIONS

RA_GRID_N = (1, 2)
RA_GRID_M = (5, 10, 15)
#: AutoAugment's operations with identity and cutout, less colour (saturation: nothing on grey images) and
#: invert (an inverted digit or shape never occurs at test); the set of examples/digits-autoaugment.yaml
OPERATIONS = tuple(op for op in AUGMENT_OPERATIONS if op not in ("color", "invert"))
#: share of the data held out, halved into val and test; the rest is the pool training images come from
HELD_OUT = 0.6


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark runs: data, network and optimisation settings, arms' budgets."""

    dataset: str = "digits"
    image_size: int = 32
    seeds: int = 5
    train_per_class: int = 30
    epochs: int = 80
    search_per_class: int = 15
    search_epochs: int = 80
    search_trials: int = 32
    combine: int = 5
    strategy: str = "tpe"
    sub_policies: int = 5
    operations: tuple[str, ...] = OPERATIONS
    ra_n: tuple[int, ...] = RA_GRID_N
    ra_m: tuple[int, ...] = RA_GRID_M
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
            "val_fraction": HELD_OUT,
            "epochs": epochs,
            **self.settings,
            **extra,
        }


@dataclass(frozen=True)
class Run:
    """One training run: settings, images per class, an optional searched policy (``aug_*`` decisions), a seed."""

    settings: Mapping[str, Any]
    seed: int
    per_class: int
    architecture: Mapping[str, Any] = field(default_factory=dict)
    search_space: Mapping[str, Any] | None = None


class TooFewImages(ValueError):
    """The training pool holds fewer images of a class than a run asks for."""


class Outcome(NamedTuple):
    """Accuracy of a run's final weights on val, test and (without augmentation) its own training images."""

    val: float
    test: float
    train: float


def training_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` images of every class, sorted; a smaller count gives a subset of a larger one.

    Each class is permuted once by ``seed`` and its first ``per_class`` taken, so the search's reduced
    set lies inside the arms' training set.
    """
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        if len(idx) < per_class:
            raise TooFewImages(f"class {label} has {len(idx)} training images, fewer than {per_class} per class")
        chosen.append(idx[:per_class])
    return np.sort(np.concatenate(chosen))


def _splits(settings: Any, per_class: int) -> tuple[Any, Any]:
    """The data as train (``per_class`` per class) / val / test: the trainer's held-out share halved by class."""
    from kubenas_trainer.data import load_dataset, stratified_split

    data = load_dataset(settings)
    train = training_subset(data.y_train.numpy(), per_class, settings.split_seed + 2)
    data = replace(data, x_train=data.x_train[train], y_train=data.y_train[train])
    test_idx, val_idx = stratified_split(data.y_val.numpy(), 0.5, settings.split_seed + 1)
    val = replace(data, x_val=data.x_val[val_idx], y_val=data.y_val[val_idx])
    test = replace(data, x_val=data.x_val[test_idx], y_val=data.y_val[test_idx])
    return val, test


_DATA_CACHE: dict[str, tuple[Any, Any]] = {}


def train_once(run: Run) -> Outcome:
    """Validation, test and training accuracy of one run (in a worker process: data is cached per process)."""
    import torch

    from kubenas_trainer.autoaugment import choose_augment
    from kubenas_trainer.candidate import Candidate
    from kubenas_trainer.model import MacroConfig, build_network
    from kubenas_trainer.policy import parse_policy
    from kubenas_trainer.runtime import configure
    from kubenas_trainer.settings import resolve_settings
    from kubenas_trainer.train import Trainer

    settings, _ = resolve_settings(run.settings, {})
    data_keys = ("dataset", "image_size", "synthetic_samples", "val_fraction")
    key = repr((sorted((k, v) for k, v in run.settings.items() if k in data_keys), run.per_class))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = _splits(settings, run.per_class)
    val, test = _DATA_CACHE[key]
    device = torch.device("cpu")
    configure(settings, run.seed, device)
    policy = parse_policy(run.architecture, run.search_space)
    augment = choose_augment(settings, policy, settings.dataset, val.unit_range)
    macro = MacroConfig.from_settings(settings, val.sample_shape[0], val.num_classes)
    trainer = Trainer(build_network(Candidate(), macro), val, settings, device, run.seed, augment=augment)
    fit = trainer.fit()
    trainer.data = test
    test_accuracy = trainer.evaluate().accuracy
    trainer.data = replace(val, x_val=val.x_train, y_val=val.y_train)
    return Outcome(fit.final.accuracy, test_accuracy, trainer.evaluate().accuracy)


def _map(runs: Sequence[Run], pool: Executor | None) -> list[Outcome]:
    """The runs' outcomes, in order: in ``pool`` (kept for the whole benchmark: workers keep torch and the data)."""
    if pool is None or len(runs) <= 1:
        return [train_once(r) for r in runs]
    return list(pool.map(train_once, runs))


def stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation, in percent, with the values themselves."""
    pct = [100.0 * v for v in values]
    return {
        "mean": round(statistics.fmean(pct), 3),
        "std": round(statistics.stdev(pct), 3) if len(pct) > 1 else 0.0,
        "values": [round(v, 3) for v in pct],
    }


def arm_figures(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """An arm's test accuracy (mean, std, values) with its mean validation and clean training accuracy."""
    return {
        **stats([o.test for o in outcomes]),
        "val_mean": stats([o.val for o in outcomes])["mean"],
        "train_accuracy": stats([o.train for o in outcomes])["mean"],
    }


def beats(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether ``a`` is ahead of ``b`` by more than two seed standard deviations (the larger of the two)."""
    return a["mean"] - b["mean"] > 2 * max(a["std"], b["std"])


def distinct_best(
    trials: Sequence[tuple[Mapping[str, Any], float]], count: int
) -> list[tuple[Mapping[str, Any], float]]:
    """The ``count`` best trials by validation accuracy, one per distinct policy (ties: the earlier trial)."""
    ranked = sorted(enumerate(trials), key=lambda t: (-t[1][1], t[0]))
    seen: set[str] = set()
    best: list[tuple[Mapping[str, Any], float]] = []
    for _, (arch, val) in ranked:
        key = repr(sorted(arch.items()))
        if key not in seen:
            seen.add(key)
            best.append((arch, val))
        if len(best) == count:
            break
    return best


def search_setup(config: BenchConfig) -> tuple[Any, dict[str, Any], Any]:
    """The policy space (built, and in wire form) and the strategy that searches it. The command builds
    them up front too, so a strategy that cannot run here (``retrain`` needs its settings) is refused
    before the baseline arms spend their hours training."""
    from kubenas.api.augment import AugmentationSpace
    from kubenas.api.space import SearchSpaceSpec
    from kubenas.api.strategy import StrategySpec
    from kubenas.core.space import build_space
    from kubenas.core.strategies import make_strategy

    spec = SearchSpaceSpec(
        augmentation=AugmentationSpace(sub_policies=config.sub_policies, operations=list(config.operations))
    )
    space = build_space(spec)
    strategy = make_strategy(StrategySpec.model_validate({"name": config.strategy, "seed": 0}), space)
    return space, spec.to_wire(), strategy


def run_benchmark(config: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every arm, the search and the verdicts, as the JSON ``kubenas bench augment --json`` writes."""
    if config.jobs <= 1:
        return _benchmark(config, None, log)
    with ProcessPoolExecutor(max_workers=config.jobs) as pool:
        return _benchmark(config, pool, log)


def _benchmark(config: BenchConfig, pool: Executor | None, log: Callable[[str], None]) -> dict[str, Any]:
    from kubenas.core.augment import join_policies, operation_frequencies, policy_of
    from kubenas.core.strategies import Observation

    started = time.perf_counter()
    seeds = range(config.seeds)
    full = config.trainer_settings(config.epochs)

    def arm(name: str, settings: Mapping[str, Any], **kw: Any) -> list[Outcome]:
        t0 = time.perf_counter()
        out = _map([Run(settings, 1000 + s, config.train_per_class, **kw) for s in seeds], pool)
        fig = arm_figures(out)
        log(
            f"{name}: test {fig['mean']:.2f} ± {fig['std']:.2f} %, val {fig['val_mean']:.2f}, "
            f"train {fig['train_accuracy']:.2f} ({time.perf_counter() - t0:.0f} s)"
        )
        return out

    result: dict[str, Any] = {}
    result["none"] = arm_figures(arm("none", {**full, "augment_policy": "none"}))

    grid: dict[str, Any] = {}
    for n, m in itertools.product(config.ra_n, config.ra_m):
        out = arm(
            f"randaugment N={n} M={m}",
            {**full, "augment_policy": "randaugment", "randaugment_n": n, "randaugment_m": m},
        )
        grid[f"N={n},M={m}"] = {"n": n, "m": m, "val": stats([o.val for o in out]), "test": arm_figures(out)}
    best_cell = max(grid.values(), key=lambda c: c["val"]["mean"])
    result["randaugment_best"] = {**best_cell["test"], "n": best_cell["n"], "m": best_cell["m"]}
    result["randaugment_grid"] = grid
    result["trivialaugment"] = arm_figures(arm("trivialaugment", {**full, "augment_policy": "trivialaugment"}))

    # the search: one seed per trial, on the proxy (reduced training set), validation accuracy as the reward
    space, wire, strategy = search_setup(config)
    proxy = config.trainer_settings(config.search_epochs)
    trials: list[tuple[dict[str, Any], float]] = []
    t0 = time.perf_counter()
    while len(trials) < config.search_trials:
        batch = [strategy.ask() for _ in range(min(config.jobs, config.search_trials - len(trials)))]
        first = strategy.asked - len(batch)
        out = _map([Run(proxy, 0, config.search_per_class, a, wire) for a in batch], pool)
        for i, (arch, outcome) in enumerate(zip(batch, out, strict=True)):
            strategy.tell(first + i, arch, Observation(reward=100.0 * outcome.val))
            trials.append((dict(arch), outcome.val))
    log(f"search: {config.search_trials} trials with {config.strategy} ({time.perf_counter() - t0:.0f} s)")
    family = space.families["augmentation"]
    best = distinct_best(trials, config.combine)
    joined = join_policies([a for a, _ in best], family)
    joined_family = {**family, "subPolicies": config.sub_policies * len(best)}
    result["searched"] = arm_figures(arm("searched", full, architecture=joined, search_space=wire))
    result["searched"]["policy"] = policy_of(joined, joined_family)
    result["searched"]["joined_policies"] = len(best)
    result["searched"]["search_val_accuracy"] = [round(100.0 * v, 3) for _, v in best]
    result["search_trials"] = config.search_trials
    result["search_val_accuracy"] = stats([v for _, v in trials])
    everything = [policy_of(a, family) for a, _ in trials]
    result["operation_frequencies"] = {
        "searched_policy": operation_frequencies([result["searched"]["policy"]]),
        "searched_policy_weighted_by_probability": operation_frequencies([result["searched"]["policy"]], weighted=True),
        "all_trials": operation_frequencies(everything),
    }
    wins = {
        "searched_beats_none": beats(result["searched"], result["none"]),
        "searched_beats_randaugment_best": beats(result["searched"], result["randaugment_best"]),
        "randaugment_best_beats_searched": beats(result["randaugment_best"], result["searched"]),
        "trivialaugment_beats_none": beats(result["trivialaugment"], result["none"]),
        "randaugment_best_beats_none": beats(result["randaugment_best"], result["none"]),
    }
    result["wins"] = wins
    result["goal_met"] = wins["searched_beats_none"] and not wins["randaugment_best_beats_searched"]
    result["config"] = {
        "dataset": config.dataset,
        "image_size": config.image_size,
        "seeds": config.seeds,
        "train_per_class": config.train_per_class,
        "epochs": config.epochs,
        "search_per_class": config.search_per_class,
        "search_epochs": config.search_epochs,
        "combine": config.combine,
        "strategy": config.strategy,
        "sub_policies": config.sub_policies,
        "operations": list(config.operations),
        "randaugment_grid": {"n": list(config.ra_n), "m": list(config.ra_m)},
        "settings": dict(config.settings),
        "held_out": HELD_OUT,
        "metric": "test accuracy, % (val split for every choice; train_accuracy: clean, on the training images)",
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def command(
    json_out: Path | None = typer.Option(None, "--json", dir_okay=False, help="Also write the result JSON here."),
    dataset: str = typer.Option("digits", "--dataset", help="digits (resized) or shapes (generated)."),
    image_size: int = typer.Option(32, "--image-size", min=8, max=128, help="Image side in pixels."),
    seeds: int = typer.Option(5, "--seeds", min=2, help="Trial seeds per arm."),
    train_per_class: int = typer.Option(30, "--train-per-class", min=1, help="Training images per class."),
    epochs: int = typer.Option(80, "--epochs", min=1, help="Epochs of every reported run."),
    search_per_class: int = typer.Option(
        15, "--search-per-class", min=1, help="Training images per class of a search trial (the proxy)."
    ),
    search_epochs: int = typer.Option(80, "--search-epochs", min=1, help="Epochs of a search trial."),
    search_trials: int = typer.Option(32, "--search-trials", min=1, help="Policies the search tries."),
    combine: int = typer.Option(5, "--combine", min=1, help="Best searched policies joined into the final one."),
    strategy: str = typer.Option("tpe", "--strategy", help="Search strategy over the policy space."),
    sub_policies: int = typer.Option(5, "--sub-policies", min=1, max=16, help="Sub-policies of a searched policy."),
    operations: str = typer.Option(",".join(OPERATIONS), "--operations", help="Operations of the searched space."),
    ra_n: list[int] = typer.Option(list(RA_GRID_N), "--ra-n", min=1, help="RandAugment N values of the grid."),
    ra_m: list[int] = typer.Option(list(RA_GRID_M), "--ra-m", min=0, max=30, help="RandAugment M values (of 0..30)."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes (one torch thread each)."),
) -> None:
    """No augmentation, the best RandAugment cell, TrivialAugmentWide and a searched policy, on test accuracy."""
    import json

    from pydantic import ValidationError

    from kubenas.api.augment import AugmentationSpace
    from kubenas.api.strategy import STRATEGY_NAMES
    from kubenas.core.errors import SpecError

    if strategy not in STRATEGY_NAMES:
        raise typer.BadParameter(f"{strategy!r} is not one of {', '.join(STRATEGY_NAMES)}", param_hint="--strategy")
    if dataset not in ("digits", "shapes"):
        raise typer.BadParameter("must be digits or shapes", param_hint="--dataset")
    if search_per_class > train_per_class:
        raise typer.BadParameter(
            f"must be at most --train-per-class ({train_per_class})", param_hint="--search-per-class"
        )
    ops = tuple(op.strip() for op in operations.split(",") if op.strip())
    try:
        AugmentationSpace(operations=list(ops))
    except ValidationError as exc:
        raise typer.BadParameter(exc.errors()[0]["msg"], param_hint="--operations") from None
    config = BenchConfig(
        dataset=dataset,
        image_size=image_size,
        seeds=seeds,
        train_per_class=train_per_class,
        epochs=epochs,
        search_per_class=search_per_class,
        search_epochs=search_epochs,
        search_trials=search_trials,
        combine=combine,
        strategy=strategy,
        sub_policies=sub_policies,
        operations=ops,
        ra_n=tuple(ra_n),
        ra_m=tuple(ra_m),
        jobs=jobs,
    )
    try:
        search_setup(config)
    except (ValidationError, SpecError) as exc:
        message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else exc.message
        raise typer.BadParameter(f"cannot search the policy space: {message}", param_hint="--strategy") from None
    try:
        result = run_benchmark(config, typer.echo)
    except TooFewImages as exc:
        raise typer.BadParameter(str(exc), param_hint="--train-per-class") from None
    summary = {k: result[k] for k in ("none", "randaugment_best", "trivialaugment", "searched")}
    for name, arm in summary.items():
        typer.echo(f"{name:>18}: {arm['mean']:.2f} ± {arm['std']:.2f} % (train {arm['train_accuracy']:.2f})")
    typer.echo(f"wins (beyond 2 std): {json.dumps(result['wins'])}; goal met: {result['goal_met']}")
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2) + "\n")

"""``kubenas bench oneshot``: how well a supernet ranks architectures, and what one-shot search saves.

On CPU with scikit-learn's digits (or the trainer's generated ``shapes`` images, ``--dataset``), over
a small cell space, in one process with one torch thread:

1. **Ground truth.** ``--archs`` buildable architectures (all of the space when it has no more), each
   trained stand-alone with the trainer's own loop and two seeds (0 and 1). Their mean validation
   accuracy is the ground truth; the Kendall tau between the two seeds is the ceiling any ranking
   can reach (``tau_seed_ceiling``).
2. **One supernet**, trained with uniform single paths; each architecture is scored with inherited
   weights after ``--finetune-steps`` SGD steps from them (20 by default, 0 for none: children
   inheriting weights; the steps' CPU seconds are charged to the one-shot pipeline) and batch-norm
   recalibration (the phase-2 evaluator), by its validation accuracy or loss (``--score``).
   ``kendall_tau`` and ``spearman`` compare those scores with the ground truth, ``tau_ci`` is a
   paired bootstrap (scipy) interval, ``tau_params`` is the baseline ranking by parameter count.
3. **Pipelines**, ``--repeats`` times with search seeds 0, 1, ...: *multi-trial evolution* trains
   ``--trials`` candidates stand-alone (seed 0, the search signal) and keeps the best; *one-shot* runs
   the same evolution for ``--evaluations`` candidates on the supernet, retrains its top ``--top-k``
   stand-alone (seed 0) and keeps the best of those. Each pipeline's final architecture is then
   trained once more with seed 1, which is its reported (retrained) accuracy: a fresh training,
   free of the winner's curse of the search signal. ``cost_ratio`` is the trainer CPU seconds of
   multi-trial evolution over those of the one-shot pipeline (supernet, evaluations and retraining),
   means over the repeats. Trainings are cached by (architecture, seed), and a pipeline is charged
   the measured CPU seconds of every training it uses, as if it had run them itself. With ``--cache``
   the stand-alone trainings are also kept in a JSON file, keyed by their settings, architecture and
   seed, so runs that vary only the supernet or its scoring share one ground truth and one set of
   multi-trial runs (their measured CPU seconds included).

The collapse guard reports the operation mix and the share of parameter-free edges of the cells the
one-shot search chose (its top k of every repeat) against the space's uniform mix and the ground
truth's top k.

torch and the trainer are imported inside the functions that need them: ``kubenas`` itself never
loads torch.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from kubenas.insights.collapse import operation_mix

Arch = dict[str, str]

#: the generated image set's size: 1,500 one-channel 16x16 images of 6 shapes (300 held out), small
#: enough that 60 stand-alone trainings and the pipelines stay within minutes on one CPU thread
SHAPES = {"image_size": 16, "synthetic_samples": 1500}
DATASETS = ("digits", "shapes")
SCORES = ("accuracy", "loss")


def key_of(arch: Mapping[str, Any]) -> str:
    return json.dumps(dict(arch), sort_keys=True)


@dataclass(frozen=True)
class Config:
    """The benchmark's knobs (the command's flags)."""

    dataset: str = "digits"
    nodes: int = 3
    operations: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3")
    archs: int = 30
    epochs: int = 4
    supernet_epochs: int = 12
    width: int = 8
    trials: int = 30
    evaluations: int = 30
    top_k: int = 2
    repeats: int = 5
    population: int = 10
    tournament: int = 5
    recalibration_batches: int = 4
    #: SGD steps each candidate trains from its inherited weights before it is scored (0: none); the
    #: default is what ranked better on both datasets (docs/benchmarks.md)
    finetune_steps: int = 20
    finetune_lr: float | None = None
    #: what ranks candidates on the supernet: validation accuracy, or minus validation loss
    score: str = "accuracy"
    #: the supernet's peak LR (None: the stand-alone trainings' 0.1)
    supernet_lr: float | None = None
    resamples: int = 2000
    seed: int = 0
    #: one supernet per sampling, ranked and searched alike; the first one's figures are the headline
    sampling: tuple[str, ...] = ("uniform",)
    paths_per_batch: int = 16
    batches_per_epoch: int = 2
    warmup_epochs: int = 0

    @property
    def search_space(self) -> dict[str, Any]:
        return {"cell": {"nodes": self.nodes, "operations": list(self.operations)}}

    def enas(self) -> Any:
        """The ENAS settings of an ``enas`` supernet (the policy's defaults are the API's)."""
        from kubenas.api.oneshot import EnasSettings

        return EnasSettings(
            paths_per_batch=self.paths_per_batch,
            batches_per_epoch=self.batches_per_epoch,
            warmup_epochs=self.warmup_epochs,
        )

    def settings(self, epochs: int) -> dict[str, Any]:
        """Trainer settings of every training: small and fast, one thread, validation only at the end."""
        return (SHAPES if self.dataset == "shapes" else {}) | {
            "dataset": self.dataset,
            "width": self.width,
            "stages": 2,
            "cells_per_stage": 1,
            "epochs": epochs,
            "batch_size": 64,
            "lr": 0.1,
            "threads": 1,
            "eval_every": 0,
            "device": "cpu",
        }

    def supernet_settings(self) -> dict[str, Any]:
        lr = {} if self.supernet_lr is None else {"lr": self.supernet_lr}
        return self.settings(self.supernet_epochs) | lr


@dataclass(frozen=True)
class Run:
    """One training or evaluation: the accuracy (and loss) it reached and the CPU seconds it took."""

    accuracy: float
    cpu_seconds: float
    params: int = 0
    loss: float = math.nan

    def reward(self, score: str = "accuracy") -> float:
        """What a search maximises: the accuracy, or minus the loss."""
        return -self.loss if score == "loss" else self.accuracy


@dataclass
class Lab:
    """Trainings and supernet evaluations, each done once and cached (see the module docstring)."""

    config: Config
    cache: Path | None = None
    _standalone: dict[tuple[str, int], Run | None] = field(default_factory=dict)
    _data: Any = None
    _stored: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cache is not None and self.cache.is_file():
            self._stored = json.loads(self.cache.read_text())

    def _cache_key(self, arch: Arch, seed: int) -> str:
        """What a stand-alone training depends on: its settings, the architecture and the seed."""
        return json.dumps([self.config.settings(self.config.epochs), dict(arch), seed], sort_keys=True)

    def data(self) -> Any:
        if self._data is None:
            from kubenas_trainer.data import load_dataset
            from kubenas_trainer.settings import Settings

            self._data = load_dataset(Settings(**self.config.settings(self.config.epochs)))
        return self._data

    def standalone(self, arch: Arch, seed: int) -> Run | None:
        """Train ``arch`` from scratch with ``seed`` (None: not buildable)."""
        key = (key_of(arch), seed)
        if key not in self._standalone:
            stored = self._cache_key(arch, seed)
            if stored in self._stored:
                found = self._stored[stored]
                self._standalone[key] = None if found is None else Run(**found)
            else:
                self._standalone[key] = run = self._train(arch, seed)
                self._store(stored, run)
        return self._standalone[key]

    def _store(self, key: str, run: Run | None) -> None:
        if self.cache is None:
            return
        self._stored[key] = None if run is None else run.__dict__
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        self.cache.write_text(json.dumps(self._stored, sort_keys=True))

    def _train(self, arch: Arch, seed: int) -> Run | None:
        import torch

        from kubenas_trainer.candidate import parse_candidate
        from kubenas_trainer.costs import count_params
        from kubenas_trainer.errors import BadCandidate
        from kubenas_trainer.model import MacroConfig, build_network
        from kubenas_trainer.runtime import configure
        from kubenas_trainer.settings import Settings
        from kubenas_trainer.train import Trainer

        settings = Settings(**self.config.settings(self.config.epochs))
        data = self.data()
        started = time.process_time()
        try:
            candidate = parse_candidate(arch, self.config.search_space)
            configure(settings, seed, torch.device("cpu"))
            model = build_network(
                candidate, MacroConfig.from_settings(settings, data.sample_shape[0], data.num_classes)
            )
        except BadCandidate:
            return None
        fit = Trainer(model, data, settings, torch.device("cpu"), seed).fit()
        return Run(fit.final.accuracy, time.process_time() - started, count_params(model), fit.final.loss)

    def train_supernet(self, folder: Path, sampling: str = "uniform") -> Supernet:
        """One supernet trained with ``sampling``; for ``enas`` the policy is the controller's own app on
        loopback, in this process, so its CPU seconds are charged to the supernet like the trainer's."""
        from kubenas.api.space import SearchSpaceSpec
        from kubenas.controller.paths import paths_token
        from kubenas.core.enas import PolicyConfig, last_rewarded
        from kubenas.local.controller import LoopbackController
        from kubenas_trainer.oneshot import Evaluator, train_supernet
        from kubenas_trainer.paths import PathsClient
        from kubenas_trainer.settings import Settings

        settings = Settings(**self.config.supernet_settings())
        space, seed = self.config.search_space, self.config.seed
        started = time.process_time()
        with contextlib.ExitStack() as stack:
            client = None
            if sampling == "enas":
                controller = stack.enter_context(LoopbackController("bench"))
                policy = PolicyConfig(SearchSpaceSpec.model_validate(space), seed, self.config.enas())
                token = paths_token(controller.token, "bench-supernet")
                client = PathsClient([controller.url], token, "bench-supernet", policy.to_wire())
            run = train_supernet(space, settings, seed, folder, data=self.data(), paths=client)
        evaluator = Evaluator(
            folder,
            self.config.recalibration_batches,
            data=self.data(),
            finetune_steps=self.config.finetune_steps,
            finetune_lr=self.config.finetune_lr,
        )
        last = last_rewarded(client.record, self.config.paths_per_batch) if client is not None else []
        cpu = time.process_time() - started
        return Supernet(sampling, cpu, run.val_accuracy, evaluator, self.config.score, last)


@dataclass
class Supernet:
    """One trained supernet (one sampling), its cost, and its evaluations, each done once and cached."""

    sampling: str
    cpu_seconds: float
    accuracy: float
    evaluator: Any
    #: what ranks candidates: "accuracy", or "loss" (minus the validation loss)
    by: str = "accuracy"
    #: ENAS: the paths of the policy's last rewarded batch (what it prefers at the end of training)
    policy_last_batch: list[Arch] = field(default_factory=list)
    scores: dict[str, Run | None] = field(default_factory=dict)

    def score(self, arch: Arch) -> Run | None:
        """``arch`` scored with the supernet's weights (None: not buildable)."""
        from kubenas_trainer.errors import BadCandidate

        key = key_of(arch)
        if key not in self.scores:
            started = time.process_time()
            try:
                metrics = self.evaluator.evaluate(arch)
            except BadCandidate:
                self.scores[key] = None
            else:
                cpu = time.process_time() - started
                self.scores[key] = Run(metrics["val_accuracy"], cpu, int(metrics["params"]), metrics["val_loss"])
        return self.scores[key]


def buildable_architectures(config: Config) -> list[Arch]:
    """Every architecture of the cell space that has an input-to-output path, in a fixed order."""
    from kubenas_trainer.errors import BadCandidate
    from kubenas_trainer.supernet import SuperSpace

    space = SuperSpace.from_search_space(config.search_space)
    names = list(space.decisions())
    out = []
    for ops in itertools.product(config.operations, repeat=len(names)):
        arch = dict(zip(names, ops, strict=True))
        try:
            space.candidate(arch)
        except BadCandidate:
            continue
        out.append(arch)
    return out


def check_space(config: Config) -> None:
    """typer.BadParameter naming ``--operations`` when the cell space cannot be benchmarked: checked
    before anything trains, so a bad list is one line of usage error rather than a traceback from
    deep inside :func:`benchmark` (the API's checks, the trainer's operations, a space too small to rank).
    """
    from pydantic import ValidationError

    from kubenas.api.space import SearchSpaceSpec
    from kubenas_trainer.errors import BadCandidate

    if not config.operations:
        raise typer.BadParameter("give at least one operation, comma-separated", param_hint="--operations")
    try:
        SearchSpaceSpec.model_validate(config.search_space)
        everything = buildable_architectures(config)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise typer.BadParameter(message, param_hint="--operations") from None
    except BadCandidate as exc:
        raise typer.BadParameter(str(exc), param_hint="--operations") from None
    if len(everything) < 3:  # as --archs: no ranking to correlate below three architectures
        message = f"a cell of {config.nodes} nodes over {', '.join(config.operations)} has {len(everything)}"
        raise typer.BadParameter(f"{message} buildable architectures, fewer than 3 to rank", param_hint="--operations")


def rank_figures(
    scores: Sequence[float],
    truth: Sequence[float],
    seed_a: Sequence[float],
    seed_b: Sequence[float],
    params: Sequence[float],
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Kendall tau (with a paired bootstrap interval) and Spearman rho of ``scores`` against ``truth``,
    the parameter-count baseline and the seed-to-seed ceiling."""
    import numpy as np
    from scipy.stats import bootstrap, kendalltau, spearmanr

    def tau(x: Sequence[float], y: Sequence[float]) -> float:
        value = float(kendalltau(x, y).statistic)
        return value if math.isfinite(value) else 0.0

    def interval(x: Sequence[float]) -> list[float]:
        found = bootstrap(
            (np.asarray(x), np.asarray(truth)),
            tau,
            paired=True,
            vectorized=False,
            n_resamples=resamples,
            method="percentile",
            random_state=np.random.default_rng(seed),
        ).confidence_interval
        return [round(float(found.low), 4), round(float(found.high), 4)]

    return {
        "kendall_tau": round(tau(scores, truth), 4),
        "tau_ci": interval(scores),
        "spearman": round(float(spearmanr(scores, truth).statistic), 4),
        "tau_params": round(tau(params, truth), 4),
        "tau_params_ci": interval(params),
        "tau_seed_ceiling": round(tau(seed_a, seed_b), 4),
    }


@dataclass(frozen=True)
class Outcome:
    """One pipeline's final architecture, its retrained accuracy and its CPU seconds."""

    architecture: Arch
    retrained: float
    cpu_seconds: float
    chosen: tuple[Arch, ...] = ()


def evolve(
    config: Config,
    seed: int,
    budget: int,
    score: Callable[[Arch], Run | None],
    by: str = "accuracy",
) -> list[tuple[Arch, Run | None]]:
    """Regularized evolution (the core's strategy) for ``budget`` candidates scored by ``score``."""
    from kubenas.api.space import SearchSpaceSpec
    from kubenas.api.strategy import EvolutionSettings, StrategySpec
    from kubenas.core.space import build_space
    from kubenas.core.strategies import Observation, make_strategy

    space = build_space(SearchSpaceSpec.model_validate(config.search_space))
    settings = EvolutionSettings(population_size=config.population, sample_size=config.tournament)
    strategy = make_strategy(StrategySpec(name="evolution", seed=seed, evolution=settings), space)
    history: list[tuple[Arch, Run | None]] = []
    for index in range(budget):
        arch = {k: str(v) for k, v in strategy.ask().items()}
        run = score(arch)
        observation = Observation(reward=None, failed=True) if run is None else Observation(reward=run.reward(by))
        strategy.tell(index, arch, observation)
        history.append((arch, run))
    return history


def best_of(history: Sequence[tuple[Arch, Run | None]], k: int, by: str = "accuracy") -> list[tuple[Arch, Run]]:
    """The ``k`` best scored candidates by ``by``, best first (ties: earlier)."""
    scored = [(arch, run) for arch, run in history if run is not None]
    return sorted(scored, key=lambda pair: -pair[1].reward(by))[:k]


def multitrial(lab: Lab, seed: int) -> Outcome:
    history = evolve(lab.config, seed, lab.config.trials, lambda a: lab.standalone(a, 0))
    arch, _ = best_of(history, 1)[0]
    final = lab.standalone(arch, 1)
    assert final is not None
    cost = sum(run.cpu_seconds for _, run in history if run is not None) + final.cpu_seconds
    return Outcome(arch, final.accuracy, cost)


def oneshot(lab: Lab, supernet: Supernet, seed: int) -> Outcome:
    history = evolve(lab.config, seed, lab.config.evaluations, supernet.score, lab.config.score)
    top = [arch for arch, _ in best_of(history, lab.config.top_k, lab.config.score)]
    retrained = [(arch, lab.standalone(arch, 0)) for arch in top]
    arch, _ = best_of(retrained, 1)[0]
    final = lab.standalone(arch, 1)
    assert final is not None
    cost = (
        supernet.cpu_seconds
        + sum(run.cpu_seconds for _, run in history if run is not None)
        + sum(run.cpu_seconds for _, run in retrained if run is not None)
        + final.cpu_seconds
    )
    return Outcome(arch, final.accuracy, cost, tuple(top))


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
    }


def benchmark(
    config: Config, workdir: Path, log: Callable[[str], None] = lambda s: None, cache: Path | None = None
) -> dict[str, Any]:
    """Run the whole benchmark (see the module docstring) and return its figures."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    lab = Lab(config, cache)
    everything = buildable_architectures(config)
    rng = np.random.default_rng(config.seed)
    sample = (
        everything
        if config.archs >= len(everything)
        else [everything[i] for i in sorted(rng.choice(len(everything), size=config.archs, replace=False))]
    )
    wall = time.perf_counter()
    log(
        f"ground truth on {config.dataset}: {len(sample)} of {len(everything)} architectures, 2 seeds,"
        f" {config.epochs} epochs each"
    )
    truth_runs = []
    for i, arch in enumerate(sample):
        a, b = lab.standalone(arch, 0), lab.standalone(arch, 1)
        assert a is not None and b is not None
        truth_runs.append((a, b))
        if (i + 1) % 10 == 0:
            log(f"  {i + 1}/{len(sample)} trained")
    truth = [(a.accuracy + b.accuracy) / 2 for a, b in truth_runs]
    truth_top = [arch for arch, _ in sorted(zip(sample, truth, strict=True), key=lambda p: -p[1])[: config.top_k]]
    log(f"multi-trial pipelines: {config.repeats} search seeds")
    multi = [multitrial(lab, seed) for seed in range(config.repeats)]
    by_sampling: dict[str, dict[str, Any]] = {}
    scores: dict[str, list[float]] = {}
    for sampling in config.sampling:
        log(f"supernet ({sampling} paths): {config.supernet_epochs} epochs, then {config.repeats} one-shot searches")
        folder = workdir / ("supernet" if sampling == "uniform" else f"supernet-{sampling}")
        supernet = lab.train_supernet(folder, sampling)
        scores[sampling] = [_scored(supernet, arch) for arch in sample]
        figures = rank_figures(
            scores[sampling],
            truth,
            [a.accuracy for a, _ in truth_runs],
            [b.accuracy for _, b in truth_runs],
            [a.params for a, _ in truth_runs],
            config.resamples,
            config.seed,
        )
        one = [oneshot(lab, supernet, seed) for seed in range(config.repeats)]
        by_sampling[sampling] = figures | pipeline_figures(config, supernet, multi, one)
        # the sample's mean accuracy on the supernet, each path's BN recalibrated: how well it trained
        # (its own validation runs one random path on statistics mixed over every path)
        accuracies = [run.accuracy for arch in sample if (run := supernet.score(arch)) is not None]
        by_sampling[sampling]["oneshot_accuracy_mean"] = round(statistics.fmean(accuracies), 4)
    figures = copy.deepcopy(by_sampling[config.sampling[0]])
    figures["cpu_seconds"]["standalone_training_mean"] = round(
        statistics.fmean(r.cpu_seconds for pair in truth_runs for r in pair), 3
    )
    figures["collapse_guard"] |= {
        "ground_truth_top": operation_mix(truth_top, config.operations),
        "space": operation_mix(everything, config.operations),
    }
    figures |= {
        "by_sampling": by_sampling,
        "rows": [
            {
                "architecture": arch,
                "standalone": [a.accuracy, b.accuracy],
                "oneshot": scores[config.sampling[0]][i],
                "oneshot_by_sampling": {s: scores[s][i] for s in config.sampling},
                "params": a.params,
            }
            for i, (arch, (a, b)) in enumerate(zip(sample, truth_runs, strict=True))
        ],
        "architectures": len(sample),
        "space_size": len(everything),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()},
        "wall_seconds": round(time.perf_counter() - wall, 1),
    }
    return figures


def _scored(supernet: Supernet, arch: Arch) -> float:
    run = supernet.score(arch)
    assert run is not None
    return run.reward(supernet.by)


def pipeline_figures(config: Config, supernet: Supernet, multi: list[Outcome], one: list[Outcome]) -> dict[str, Any]:
    """One supernet's one-shot pipelines against multi-trial evolution: accuracy, cost, collapse guard."""
    cost_multi = statistics.fmean(o.cpu_seconds for o in multi)
    cost_one = statistics.fmean(o.cpu_seconds for o in one)
    guard = {"oneshot_chosen": operation_mix([arch for o in one for arch in o.chosen], config.operations)}
    if supernet.policy_last_batch:
        guard["policy_last_batch"] = operation_mix(supernet.policy_last_batch, config.operations)
    return {
        "cost_ratio": round(cost_multi / cost_one, 3),
        "oneshot_retrained": _mean_std([o.retrained for o in one]),
        "multitrial_best": _mean_std([o.retrained for o in multi]),
        "cpu_seconds": {
            "multitrial": round(cost_multi, 2),
            "oneshot": round(cost_one, 2),
            "supernet": round(supernet.cpu_seconds, 2),
            "evaluation_mean": round(statistics.fmean(r.cpu_seconds for r in supernet.scores.values() if r), 4),
        },
        "collapse_guard": guard,
        "supernet_val_accuracy_random_paths": round(supernet.accuracy, 4),
    }


GOALS = (
    "goals: kendall_tau > tau_params with tau_ci clear of it; oneshot_retrained.mean within one std of "
    "multitrial_best.mean at cost_ratio >= 10"
)


def verdict(figures: Mapping[str, Any]) -> list[str]:
    """Each goal of the benchmark, met or missed, in one line each."""
    tau_ok = figures["kendall_tau"] > figures["tau_params"] and figures["tau_ci"][0] > figures["tau_params"]
    gap = figures["multitrial_best"]["mean"] - figures["oneshot_retrained"]["mean"]
    std = figures["multitrial_best"]["std"]
    return [
        f"ranking: {'met' if tau_ok else 'missed'} (tau {figures['kendall_tau']}, CI {figures['tau_ci']},"
        f" params {figures['tau_params']}, seed ceiling {figures['tau_seed_ceiling']})",
        f"accuracy: {'met' if gap <= std else 'missed'} (one-shot {figures['oneshot_retrained']},"
        f" multi-trial {figures['multitrial_best']})",
        f"cost: {'met' if figures['cost_ratio'] >= 10 else 'missed'} (ratio {figures['cost_ratio']})",
    ]


def _samplings(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in names if s not in ("uniform", "enas")]
    if not names or unknown:
        raise typer.BadParameter("uniform, enas, or both comma-separated", param_hint="--sampling")
    return names


def command(
    json_out: Path | None = typer.Option(None, "--json", dir_okay=False, help="Also write the figures as JSON here."),
    dataset: str = typer.Option(
        "digits", "--dataset", help="digits (scikit-learn's) or shapes (generated: 1,500 16x16 images of 6 shapes)."
    ),
    archs: int = typer.Option(30, "--archs", min=3, help="Architectures trained stand-alone (at most the space)."),
    nodes: int = typer.Option(3, "--nodes", min=2, max=5, help="Nodes of the cell."),
    operations: str = typer.Option(
        "none,skip_connect,nor_conv_1x1,nor_conv_3x3", "--operations", help="Operations, comma-separated."
    ),
    epochs: int = typer.Option(4, "--epochs", min=1, help="Epochs of every stand-alone training."),
    supernet_epochs: int = typer.Option(12, "--supernet-epochs", min=1, help="Epochs of the supernet."),
    width: int = typer.Option(8, "--width", min=1, help="Channels of the first stage."),
    trials: int = typer.Option(30, "--trials", min=1, help="Stand-alone trials of multi-trial evolution."),
    evaluations: int = typer.Option(30, "--evaluations", min=1, help="Supernet evaluations of the one-shot search."),
    top_k: int = typer.Option(2, "--top-k", min=1, help="One-shot candidates retrained from scratch."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Search seeds of each pipeline."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the sample, the supernet and the bootstrap."),
    sampling: str = typer.Option(
        "uniform",
        "--sampling",
        help="Path sampling of the supernet: uniform, enas, or both comma-separated (one supernet each, compared"
        " against the same ground truth and multi-trial runs; the first is the headline).",
    ),
    paths_per_batch: int = typer.Option(16, "--paths-per-batch", min=1, help="ENAS: paths rewarded per round."),
    batches_per_epoch: int = typer.Option(2, "--batches-per-epoch", min=1, help="ENAS: rounds per supernet epoch."),
    warmup_epochs: int = typer.Option(0, "--warmup-epochs", min=0, help="ENAS: uniform epochs before the policy."),
    supernet_lr: float | None = typer.Option(
        None, "--supernet-lr", min=0.0, help="The supernet's peak LR (default 0.1)."
    ),
    recalibration_batches: int = typer.Option(
        4, "--recalibration-batches", min=1, help="Training batches each candidate's BN statistics are estimated on."
    ),
    finetune_steps: int = typer.Option(
        20, "--finetune-steps", min=0, help="SGD steps each candidate trains from its inherited weights before scoring."
    ),
    finetune_lr: float | None = typer.Option(
        None, "--finetune-lr", min=0.0, help="Peak LR of those steps (cosine to 0; default half of 0.1)."
    ),
    score: str = typer.Option("accuracy", "--score", help="What ranks candidates on the supernet: accuracy or loss."),
    workdir: Path = typer.Option(Path("results/bench-oneshot"), "--workdir", help="Where the supernet is written."),
    cache: Path | None = typer.Option(
        None, "--cache", dir_okay=False, help="JSON file of stand-alone trainings, read and extended (shared by runs)."
    ),
) -> None:
    """Kendall tau of supernet scores against stand-alone training, and one-shot search against
    multi-trial evolution (accuracy after retraining, CPU cost), on digits or generated shapes."""
    if dataset not in DATASETS:
        raise typer.BadParameter(f"one of {', '.join(DATASETS)}", param_hint="--dataset")
    if score not in SCORES:
        raise typer.BadParameter(f"one of {', '.join(SCORES)}", param_hint="--score")
    config = Config(
        dataset=dataset,
        nodes=nodes,
        operations=tuple(o.strip() for o in operations.split(",") if o.strip()),
        archs=archs,
        epochs=epochs,
        supernet_epochs=supernet_epochs,
        width=width,
        trials=trials,
        evaluations=evaluations,
        top_k=top_k,
        repeats=repeats,
        seed=seed,
        sampling=_samplings(sampling),
        paths_per_batch=paths_per_batch,
        batches_per_epoch=batches_per_epoch,
        warmup_epochs=warmup_epochs,
        supernet_lr=supernet_lr,
        recalibration_batches=recalibration_batches,
        finetune_steps=finetune_steps,
        finetune_lr=finetune_lr,
        score=score,
    )
    check_space(config)
    figures = benchmark(config, workdir, log=typer.echo, cache=cache)
    headline = {k: figures[k] for k in ("kendall_tau", "tau_ci", "spearman", "tau_params", "tau_seed_ceiling")}
    headline |= {k: figures[k] for k in ("cost_ratio", "oneshot_retrained", "multitrial_best")}
    typer.echo(json.dumps(headline))
    typer.echo(json.dumps({"collapse_guard": figures["collapse_guard"], "cpu_seconds": figures["cpu_seconds"]}))
    typer.echo(GOALS)
    for name, found in figures["by_sampling"].items():
        if len(config.sampling) > 1:
            headline = {k: found[k] for k in ("kendall_tau", "tau_ci", "cost_ratio", "oneshot_retrained")}
            typer.echo(f"{name}: {json.dumps(headline)} collapse guard {json.dumps(found['collapse_guard'])}")
        for line in verdict(found):
            typer.echo(f"{name} {line}" if len(config.sampling) > 1 else line)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(figures, indent=2) + "\n")

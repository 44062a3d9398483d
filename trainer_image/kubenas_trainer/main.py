"""``kubenas-trainer``: one trial of the trial contract, from environment variables to final metrics.

The order of the steps is chosen for the operator's sake: the architecture is checked before the
dataset is loaded, so an unbuildable candidate costs milliseconds and exits 3; a deadline or SIGTERM
stops training between two steps and still writes metrics (``status: partial``) and exits 0, because
a partially trained candidate is information the search can use and a killed one is not.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import torch

from kubenas_trainer.autoaugment import choose_augment
from kubenas_trainer.candidate import parse_candidate
from kubenas_trainer.contract import TrialContext
from kubenas_trainer.costs import count_flops, count_params, measure_latency_ms
from kubenas_trainer.data import load_dataset
from kubenas_trainer.distributed import World, finish, place, start
from kubenas_trainer.errors import EXIT_OK, BadCandidate, TrainerError
from kubenas_trainer.model import MacroConfig, build_network
from kubenas_trainer.outputs import save_outputs
from kubenas_trainer.policy import parse_policy, write_export
from kubenas_trainer.progress import ProgressChannel
from kubenas_trainer.report import Reporter, result_object
from kubenas_trainer.runtime import configure, pick_device
from kubenas_trainer.settings import resolve_settings
from kubenas_trainer.train import EpochStats, FitResult, StopControl, Trainer
from kubenas_trainer.warm_start import warm_start

EPILOG = """\
Reads the trial contract's environment: KUBENAS_ARCHITECTURE (required), KUBENAS_ARCHITECTURE_ID,
KUBENAS_SEARCH_SPACE, KUBENAS_SETTINGS, KUBENAS_SEED, KUBENAS_TRIAL, KUBENAS_EXPERIMENT,
KUBENAS_RESULT_FILE, KUBENAS_OUTPUT_DIR and KUBENAS_INIT_WEIGHTS. Progress goes to stdout as JSON lines, and
each epoch also to KUBENAS_PROGRESS_URL (with KUBENAS_PROGRESS_TOKEN) when it is set.
Exit codes: 0 metrics written (completed, partial or diverged), 2 invalid settings or dataset,
3 bad candidate (never retried).
"""

STOP_MESSAGES = {
    "signal": "stopped by a termination signal",
    "deadline": "time budget reached",
    "diverged": "training diverged (non-finite loss)",
}

#: the result's status per reason training stopped early: a diverged trial is not a completed one (its
#: metrics, when finite at all, are those of a broken network), so a runtime can rank it last
STOP_STATUSES = {"signal": "partial", "deadline": "partial", "diverged": "diverged"}


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` means the candidate does not fit in memory (GPU or host)."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def install_stop_handlers(stop: StopControl) -> None:
    """SIGTERM (pod deletion, eviction) and SIGINT (Ctrl-C locally) ask the loop to stop and report."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.request()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def epoch_event(reporter: Reporter, stats: EpochStats) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "train_loss": stats.train_loss,
        "train_accuracy": stats.train_accuracy,
        "lr": stats.lr,
        "seconds": stats.seconds,
    }
    if stats.val is not None:
        metrics |= {"val_loss": stats.val.loss, "val_accuracy": stats.val.accuracy}
    reporter.event("epoch", epoch=stats.epoch, metrics=metrics)
    return {"epoch": stats.epoch, **metrics}


def final_metrics(fit: FitResult, params: int, flops: int, latency_ms: float, started: float) -> dict[str, Any]:
    """The numbers of the result file (see docs/trainer.md for what each one means)."""
    evaluated = [s.val.accuracy for s in fit.history if s.val is not None] + [fit.final.accuracy]
    last = fit.history[-1] if fit.history else None
    metrics: dict[str, Any] = {
        "val_accuracy": fit.final.accuracy,
        "val_loss": fit.final.loss,
        "best_val_accuracy": max(evaluated),
        "train_seconds": fit.train_seconds,
        "total_seconds": time.monotonic() - started,
        "epochs": fit.epochs,
        "steps": fit.steps,
        "samples_per_second": fit.samples_per_second,
        "params": params,
        "flops": flops,
        "latency_ms": latency_ms,
    }
    if last is not None:
        metrics |= {"train_loss": last.train_loss, "train_accuracy": last.train_accuracy}
    return metrics


def run_trial(
    context: TrialContext, reporter: Reporter, stop: StopControl, started: float, world: World | None = None
) -> int:
    """Check, build, train, measure and report one candidate (under torchrun: this rank's part of it)."""
    world = world or World()
    settings, ignored = resolve_settings(context.settings, context.architecture)
    if ignored:
        reporter.event("log", message=f"hyperparameters not used by this trainer: {', '.join(ignored)}")
    if settings.time_budget_s is not None:
        stop.deadline = started + settings.time_budget_s
    candidate = parse_candidate(context.architecture, context.search_space)
    policy = parse_policy(context.architecture, context.search_space)
    device = place(world, pick_device(settings))
    configure(settings, context.seed, device)
    start(world, device)
    data = load_dataset(settings)
    augment = choose_augment(settings, policy, settings.dataset, data.unit_range)
    try:
        macro = MacroConfig.from_settings(settings, data.sample_shape[0], data.num_classes)
        model = build_network(candidate, macro)
        params, flops = count_params(model), count_flops(model, data.sample_shape)
        reporter.event(
            "start",
            trial=context.trial,
            architecture_id=context.architecture_id,
            device=str(device),
            params=params,
            flops=flops,
            train_samples=len(data.y_train),
            val_samples=len(data.y_val),
        )
        inherited: dict[str, float] = {}
        if context.init_weights is not None:  # a parent's or a checkpoint's weights; never fails the trial
            warm = warm_start(model, context.init_weights)
            reporter.event("log", message=warm.message())
            inherited = warm.metrics()
        epochs: list[dict[str, Any]] = []
        trainer = Trainer(
            model,
            data.to(device),
            settings,
            device,
            context.seed,
            stop,
            lambda s: epochs.append(epoch_event(reporter, s)),
            augment=augment,
            world=world,
        )
        fit = trainer.fit()
        if not world.main:  # rank 0 measures and reports; the others are done
            return EXIT_OK
        runs = 3 if stop.requested else settings.latency_runs
        sample = trainer.network_input(trainer.data.x_val[:1], train=False)
        latency = measure_latency_ms(trainer.network, sample, runs=runs, autocast=trainer.autocast)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise BadCandidate("architecture", f"out of memory on {device}: {str(exc)[:200]}") from exc
        raise
    metrics = final_metrics(fit, params, flops, latency, started) | inherited
    status = STOP_STATUSES.get(fit.stopped or "", "completed")
    detail = STOP_MESSAGES.get(fit.stopped or "", "finished")
    where = f"{world.size} x {device.type}" if world.distributed else str(device)
    message = f"{detail} after {fit.epochs:.2f} of {settings.epochs} epochs on {where}"
    if ignored:  # in the result too, where the trial's status shows it: a searched value that does nothing
        message += f"; hyperparameters not used by this trainer: {', '.join(ignored)}"
    if context.output_dir is not None:
        save_outputs(
            context.output_dir,
            trainer.model,
            context,
            settings,
            data.sample_shape,
            data.num_classes,
            result_object(metrics, status, message),
            epochs,
        )
        if policy is not None:
            write_export(context.output_dir, policy, *data.sample_shape[1:])
    reporter.final(metrics, status, message)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kubenas-trainer`` console script; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="kubenas-trainer",
        description="Train one Kubenas candidate per the trial contract.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    started = time.monotonic()
    stop = StopControl()
    install_stop_handlers(stop)
    reporter = Reporter()
    world = World()
    try:
        world = World.from_env(os.environ)
        context = TrialContext.from_env(os.environ)
        # under torchrun only rank 0 reports; the other ranks' progress and result would repeat it
        if world.main:
            reporter = Reporter(context.result_file, channel=ProgressChannel.from_env(os.environ))
        else:
            reporter = Reporter(None, open(os.devnull, "w"))  # noqa: SIM115
        return run_trial(context, reporter, stop, started, world)
    except BadCandidate as exc:
        reporter.event("error", field=exc.field, message=exc.message, exit_code=exc.exit_code)
        reporter.final({}, "bad_candidate", str(exc))
        return exc.exit_code
    except TrainerError as exc:
        reporter.event("error", field=exc.field, message=exc.message, exit_code=exc.exit_code)
        print(f"kubenas-trainer: {exc}", file=sys.stderr)
        reporter.failure(str(exc))
        return exc.exit_code
    finally:
        reporter.close()
        finish(world)


if __name__ == "__main__":
    sys.exit(main())

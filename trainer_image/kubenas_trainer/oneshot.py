"""One-shot search in the trainer: train the supernet once, then evaluate many candidates with its weights.

``python -m kubenas_trainer.oneshot train`` is phase 1 of a one-shot search. It reads the trial
contract's environment (``KUBENAS_SEARCH_SPACE``, ``KUBENAS_SETTINGS``, ``KUBENAS_SEED``,
``KUBENAS_OUTPUT_DIR``, ``KUBENAS_RESULT_FILE``; no architecture: the supernet is the whole space),
trains the supernet with the ordinary training loop, one uniformly drawn path per step, and writes
the checkpoint (``supernet.pt``, a plain state dict, and ``supernet.json``, what rebuilds it) to the
output folder, which is the artifact store on Kubernetes.

``python -m kubenas_trainer.oneshot evaluate --checkpoint DIR`` is the evaluator of phase 2: it loads
the supernet and the dataset once, then answers one JSON line on stdout for each request line on
stdin (``{"index": 3, "architecture": {...}}``): the candidate's path gets its batch-norm statistics
re-estimated on a fixed set of training batches, then it is validated with the inherited weights.
With ``--finetune-steps N`` the candidate first trains its inherited weights for N SGD steps on a
fixed sequence of training batches (the weights are restored afterwards, so every score still depends
on the candidate only). Answers carry the trial contract's result object, so the caller judges them
like any trial's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F

from kubenas_trainer.contract import (
    ENV_OUTPUT_DIR,
    ENV_RESULT_FILE,
    ENV_SEARCH_SPACE,
    ENV_SETTINGS,
    _json_object,
    read_seed,
)
from kubenas_trainer.costs import count_flops, count_params
from kubenas_trainer.data import Dataset, load_dataset
from kubenas_trainer.enas import PolicyPaths
from kubenas_trainer.errors import EXIT_OK, BadCandidate, ContractError, TrainerError
from kubenas_trainer.main import install_stop_handlers
from kubenas_trainer.model import MacroConfig, build_network
from kubenas_trainer.paths import PathsClient
from kubenas_trainer.report import Reporter, result_object
from kubenas_trainer.runtime import configure, pick_device
from kubenas_trainer.settings import Settings, resolve_settings
from kubenas_trainer.supernet import SinglePath, SuperNetwork, SuperSpace, recalibrate
from kubenas_trainer.train import StopControl, Trainer, batch_count, lr_at, sgd

CHECKPOINT_FILE = "supernet.pt"
DESCRIPTION_FILE = "supernet.json"
#: training batches the batch-norm statistics of each candidate are re-estimated on, by default
RECALIBRATION_BATCHES = 4


@dataclass(frozen=True)
class SupernetRun:
    """What phase 1 reached: the supernet's validation over random paths and what it cost."""

    val_accuracy: float
    val_loss: float
    train_seconds: float
    cpu_seconds: float
    paths: int
    epochs: float
    #: ENAS sampling only: rounds, rewarded and unbuildable paths, replays of a lost policy
    policy: Mapping[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """The result object's metrics: the figures above, the policy's flattened in."""
        out = {k: v for k, v in self.__dict__.items() if k != "policy"}
        return {**out, **self.policy}


def train_supernet(
    search_space: Mapping[str, Any],
    settings: Settings,
    seed: int,
    output_dir: Path,
    stop: StopControl | None = None,
    data: Dataset | None = None,
    paths: PathsClient | None = None,
) -> SupernetRun:
    """Train the supernet of ``search_space`` with ``settings`` and write its checkpoint to ``output_dir``.

    The seed fixes the initial weights, the batches and every path drawn (a generator of its own,
    seed + 2, beside the trainer's shuffling and augmentation generators), so the same seed gives the
    same checkpoint on CPU. With ``paths`` the training paths come from the controller's policy
    instead (ENAS, :mod:`kubenas_trainer.enas`); the record of paths and rewards is written beside
    the checkpoint (``paths.jsonl``).
    """
    cpu_start = time.process_time()
    space = SuperSpace.from_search_space(search_space)
    device = pick_device(settings)
    configure(settings, seed, device)
    data = (data if data is not None else load_dataset(settings)).to(device)
    macro = MacroConfig.from_settings(settings, data.sample_shape[0], data.num_classes)
    supernet = SuperNetwork(space, macro).to(device)
    generator = torch.Generator().manual_seed(seed + 2)
    policy: PolicyPaths | None = None
    if paths is not None:
        steps = batch_count(len(data.y_train), settings.batch_size)
        policy = PolicyPaths(paths, supernet, data, settings.batch_size, steps, generator)
    sampler = SinglePath(supernet, generator, policy)
    trainer = Trainer(sampler, data, settings, device, seed, stop)
    fit = trainer.fit()
    output_dir.mkdir(parents=True, exist_ok=True)
    if policy is not None:
        policy.finish()
        policy.write_record(output_dir)
    state = {k: v.detach().to("cpu") for k, v in supernet.state_dict().items()}
    torch.save(state, output_dir / CHECKPOINT_FILE)
    run = SupernetRun(
        val_accuracy=fit.final.accuracy,
        val_loss=fit.final.loss,
        train_seconds=fit.train_seconds,
        cpu_seconds=time.process_time() - cpu_start,
        paths=sampler.paths,
        epochs=fit.epochs,
        policy=policy.figures() if policy is not None else {},
    )
    described = {
        "searchSpace": dict(search_space),
        "settings": settings.model_dump(),
        "seed": seed,
        "input": {"shape": list(data.sample_shape), "classes": data.num_classes},
        "result": run.metrics(),
    }
    (output_dir / DESCRIPTION_FILE).write_text(json.dumps(described, indent=2) + "\n")
    return run


class Evaluator:
    """A trained supernet, loaded once, that scores candidates with inherited weights.

    Every candidate is scored the same way whatever came before: its batch-norm statistics are reset
    and re-estimated on the same ``recalibration_batches`` training batches (fixed by the checkpoint's
    seed, not augmented), then the validation split is run once.

    With ``finetune_steps`` the candidate's inherited weights first train for that many SGD steps
    (the training settings' momentum, weight decay and label smoothing; a cosine from ``finetune_lr``,
    by default half the training's peak, to zero) on the same fixed batches for every
    candidate, as children inheriting their parent's weights do; the supernet's weights are restored
    afterwards. A few dozen steps move a path's weights from what suits every path towards what suits
    this one, which is what a stand-alone training measures.
    """

    def __init__(
        self,
        checkpoint: Path,
        recalibration_batches: int = RECALIBRATION_BATCHES,
        data: Dataset | None = None,
        finetune_steps: int = 0,
        finetune_lr: float | None = None,
    ) -> None:
        described = json.loads((checkpoint / DESCRIPTION_FILE).read_text())
        self.settings = Settings(**described["settings"])
        self.device = pick_device(self.settings)
        if self.settings.threads is not None:
            torch.set_num_threads(self.settings.threads)
        self.data = (data if data is not None else load_dataset(self.settings)).to(self.device)
        shape, classes = described["input"]["shape"], described["input"]["classes"]
        self.macro = MacroConfig.from_settings(self.settings, shape[0], classes)
        self.space = SuperSpace.from_search_space(described["searchSpace"])
        self.supernet = SuperNetwork(self.space, self.macro).to(self.device)
        state = torch.load(checkpoint / CHECKPOINT_FILE, map_location=self.device, weights_only=True)
        self.supernet.load_state_dict(state)
        self.supernet.eval()
        n, size = len(self.data.y_train), self.settings.batch_size
        order = torch.randperm(n, generator=torch.Generator().manual_seed(int(described["seed"]) + 3))
        chosen = order.split(size)[:recalibration_batches]
        self.calibration = [self.data.prepare(self.data.x_train[idx.to(self.device)]) for idx in chosen]
        self.finetune_steps = finetune_steps
        lr = finetune_lr if finetune_lr is not None else self.settings.lr / 2
        self.finetune_settings = self.settings.model_copy(update={"lr": lr, "schedule": "cosine", "warmup_epochs": 0})
        tuning = torch.Generator().manual_seed(int(described["seed"]) + 4)
        batches: list[torch.Tensor] = []
        while len(batches) < finetune_steps:  # whole shuffled epochs, as the training loop draws them
            batches += torch.randperm(n, generator=tuning).split(size)[: batch_count(n, size)]
        self.finetune_batches = [idx.to(self.device) for idx in batches[:finetune_steps]]
        self.pristine = {k: v.clone() for k, v in self.supernet.state_dict().items()} if finetune_steps else {}

    def finetune(self) -> None:
        """Train the current path's weights for ``finetune_steps`` steps (the caller restores them)."""
        settings = self.finetune_settings
        optimizer = sgd(self.supernet, settings)
        self.supernet.train()
        for step, idx in enumerate(self.finetune_batches):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, len(self.finetune_batches), settings, len(self.finetune_batches))
            out = self.supernet(self.data.prepare(self.data.x_train[idx]))
            loss = F.cross_entropy(out, self.data.y_train[idx], label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.supernet.zero_grad(set_to_none=True)

    def evaluate(self, architecture: Mapping[str, Any]) -> dict[str, float]:
        """Validation accuracy and loss of the candidate with the supernet's weights, plus its stand-alone
        ``params`` and ``flops`` (what constraints bound); BadCandidate for one the space refuses."""
        started = time.perf_counter()
        candidate = self.space.candidate(architecture)
        self.supernet.use(candidate)
        try:
            if self.finetune_steps:
                self.finetune()
            recalibrate(self.supernet, self.calibration)
            self.supernet.eval()
            loss, correct = self._validate()
        finally:
            if self.pristine:
                self.supernet.load_state_dict(self.pristine)
        n = max(1, len(self.data.y_val))
        standalone = build_network(candidate, self.macro)
        return {
            "val_accuracy": correct / n,
            "val_loss": loss / n,
            "params": count_params(standalone),
            "flops": count_flops(standalone, self.data.sample_shape),
            "eval_seconds": time.perf_counter() - started,
        }

    def _validate(self) -> tuple[float, int]:
        """Summed cross-entropy and correct answers of the current path over the validation split."""
        x_val, y_val = self.data.x_val, self.data.y_val
        loss, correct = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(y_val), self.settings.eval_batch_size):
                end = start + self.settings.eval_batch_size
                out = self.supernet(self.data.prepare(x_val[start:end]))
                loss += float(F.cross_entropy(out.float(), y_val[start:end], reduction="sum"))
                correct += int((out.argmax(1) == y_val[start:end]).sum())
        return loss, correct

    def answer(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The reply to one request line: its index, an exit code and the trial contract's result object."""
        index = request.get("index")
        architecture = request.get("architecture")
        if not isinstance(architecture, Mapping):
            body = result_object({}, "bad_candidate", "the request holds no architecture object")
            return {"index": index, "exitCode": BadCandidate.exit_code, "result": body}
        try:
            metrics = self.evaluate(architecture)
        except BadCandidate as exc:
            return {"index": index, "exitCode": exc.exit_code, "result": result_object({}, "bad_candidate", str(exc))}
        tuned = f" fine-tuned for {len(self.finetune_batches)} steps" if self.finetune_steps else ""
        message = f"inherited weights{tuned}, batch norm recalibrated on {len(self.calibration)} batches"
        return {"index": index, "exitCode": EXIT_OK, "result": result_object(metrics, "completed", message)}

    def serve(self, requests: TextIO, replies: TextIO) -> int:
        """Answer every request line until the input ends; returns how many were answered."""
        count = 0
        for line in _lines(requests):
            try:
                request = json.loads(line)
            except json.JSONDecodeError as exc:
                request = {"index": None, "error": exc.msg}
            replies.write(json.dumps(self.answer(request if isinstance(request, dict) else {})) + "\n")
            replies.flush()
            count += 1
        return count


def _lines(stream: TextIO) -> Iterator[str]:
    while line := stream.readline():
        if line.strip():
            yield line


def _train_command(env: Mapping[str, str]) -> int:
    started = time.monotonic()
    stop = StopControl()
    install_stop_handlers(stop)
    result = env.get(ENV_RESULT_FILE, "").strip()
    reporter = Reporter(Path(result) if result else None)
    try:
        space = _json_object(env, ENV_SEARCH_SPACE)
        if space is None:
            raise ContractError(ENV_SEARCH_SPACE, "is not set: the supernet is built from the search space")
        output = env.get(ENV_OUTPUT_DIR, "").strip()
        if not output:
            raise ContractError(ENV_OUTPUT_DIR, "is not set: the supernet's checkpoint is written there")
        seed = read_seed(env)
        settings, _ = resolve_settings(_json_object(env, ENV_SETTINGS) or {}, {})
        if settings.time_budget_s is not None:
            stop.deadline = started + settings.time_budget_s
        SuperSpace.from_search_space(space)  # a space that cannot be one-shot fails before any data loads
        run = train_supernet(space, settings, seed, Path(output), stop, paths=PathsClient.from_env(env))
    except TrainerError as exc:
        reporter.event("error", field=exc.field, message=exc.message, exit_code=exc.exit_code)
        print(f"kubenas-trainer oneshot: {exc}", file=sys.stderr)
        if isinstance(exc, BadCandidate):
            reporter.final({}, "bad_candidate", str(exc))
        else:
            reporter.failure(str(exc))
        return exc.exit_code
    status = "partial" if stop.reason() in ("signal", "deadline") else "completed"
    message = f"supernet trained for {run.epochs:.2f} epochs, {run.paths} paths drawn"
    if run.policy:
        message += f", {run.policy['rewarded_paths']:.0f} rewarded by the ENAS policy"
    reporter.final(run.metrics(), status, message)
    return EXIT_OK


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum`` (argparse names the option and exits 2 otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _positive_finite(text: str) -> float:
    """An argparse type: a finite number above zero (a learning rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubenas_trainer.oneshot", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="phase 1: train the supernet (trial contract environment, no architecture)")
    evaluate = sub.add_parser("evaluate", help="phase 2: score candidates read from stdin, one JSON line each")
    evaluate.add_argument("--checkpoint", type=Path, required=True, help="the folder phase 1 wrote")
    # out-of-range values are refused here (exit 2): a negative count would slice batches from the end
    # and zero recalibration batches would score every candidate with unusable statistics, silently
    evaluate.add_argument(
        "--recalibration-batches",
        type=_at_least(1),
        default=RECALIBRATION_BATCHES,
        help=f"training batches that re-estimate batch norm (at least 1; default {RECALIBRATION_BATCHES})",
    )
    evaluate.add_argument(
        "--finetune-steps", type=_at_least(0), default=0, help="SGD steps from the inherited weights (at least 0)"
    )
    evaluate.add_argument(
        "--finetune-lr", type=_positive_finite, default=None, help="their peak LR, above 0 (default: half of lr)"
    )
    args = parser.parse_args(argv)
    if args.command == "train":
        return _train_command(os.environ)
    try:
        evaluator = Evaluator(
            args.checkpoint,
            args.recalibration_batches,
            finetune_steps=args.finetune_steps,
            finetune_lr=args.finetune_lr,
        )
    except (OSError, KeyError, ValueError, TrainerError) as exc:
        print(f"kubenas-trainer oneshot: cannot load the supernet in {args.checkpoint}: {exc}", file=sys.stderr)
        return 2
    evaluator.serve(sys.stdin, sys.stdout)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

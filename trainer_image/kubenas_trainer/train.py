"""The training loop: SGD with Nesterov momentum, a per-step LR schedule, label smoothing, weight decay.

The loop is deliberately the minimal PyTorch loop plus only what a trial needs: a stop check per step
(deadline or SIGTERM, a clock read and a flag test), on-device accumulation of the epoch's loss and
accuracy (no host sync per step), and bf16 autocast + channels_last on CUDA. The overhead benchmark
(benchmarks/trainer_overhead.py) holds it to within a few per cent of a hand-written loop.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from kubenas_trainer.augment import random_crop_flip
from kubenas_trainer.autoaugment import Augment
from kubenas_trainer.data import Dataset
from kubenas_trainer.distributed import STOP_SYNC_STEPS, World, agreed_stop, sum_over_ranks
from kubenas_trainer.errors import SettingsError
from kubenas_trainer.settings import Settings


class StopControl:
    """Why training should stop now, if it should: a signal arrived, or the deadline passed.

    The signal handler only sets an event; the loop polls it between steps, so a stop never interrupts
    an optimiser step half-way and the weights it reports are consistent.
    """

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        self._signal = threading.Event()

    def request(self) -> None:
        self._signal.set()

    @property
    def requested(self) -> bool:
        return self._signal.is_set()

    def reason(self) -> str | None:
        if self._signal.is_set():
            return "signal"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "deadline"
        return None


@dataclass(frozen=True)
class Evaluation:
    """Validation loss (plain cross-entropy) and accuracy of the weights after ``step`` steps."""

    loss: float
    accuracy: float
    step: int


@dataclass(frozen=True)
class EpochStats:
    """One epoch's training figures; ``val`` when the epoch ended with a validation."""

    epoch: int
    train_loss: float
    train_accuracy: float
    lr: float
    seconds: float
    val: Evaluation | None = None


@dataclass
class FitResult:
    """What a training run reached: final evaluation, progress, timing and why it stopped early (if it did)."""

    final: Evaluation
    steps: int
    epochs: float
    samples: int
    step_seconds: float
    train_seconds: float
    stopped: str | None = None
    history: list[EpochStats] = field(default_factory=list)

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.step_seconds if self.step_seconds > 0 else 0.0


def lr_at(step: int, total: int, settings: Settings, steps_per_epoch: int) -> float:
    """Learning rate of ``step`` out of ``total``: cosine to zero after a linear warm-up, one-cycle, or constant."""
    peak = settings.lr
    if settings.schedule == "constant":
        return peak
    if settings.schedule == "onecycle":
        rise = max(1, round(0.3 * total))
        if step < rise:
            return peak / 25 + (peak - peak / 25) * (1 - math.cos(math.pi * step / rise)) / 2
        progress = (step - rise) / max(1, total - rise)
        return peak / 1e4 + (peak - peak / 1e4) * (1 + math.cos(math.pi * progress)) / 2
    warmup = round(settings.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (1 + math.cos(math.pi * min(1.0, progress))) / 2


def batch_count(samples: int, batch_size: int) -> int:
    """Batches per epoch; a last batch of one sample is dropped, as batch norm on 1x1 maps cannot train on it."""
    count = math.ceil(samples / batch_size)
    if count > 1 and samples - (count - 1) * batch_size < 2:
        count -= 1
    return count


def last_stage_side(side: int, stages: int) -> int:
    """Side of the last stage's feature maps for inputs of ``side``: each reduction block halves it,
    rounding up (a 3x3 stride-2 convolution with padding 1), and nothing else changes it."""
    for _ in range(stages - 1):
        side = (side + 1) // 2
    return side


def check_batch_for_batch_norm(model: nn.Module, batch: int, sample_shape: tuple[int, ...], settings: Settings) -> None:
    """Refuse a training batch of one sample when the network's last stage has 1x1 maps (tables, or images
    reduced that far): batch norm there would see one value per channel, which torch refuses mid-epoch
    with "Expected more than 1 value per channel", a crash instead of a configuration error."""
    if batch >= 2 or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    height, width = (last_stage_side(side, settings.stages) for side in sample_shape[1:3])
    if height * width < 2:
        raise SettingsError(
            settings.spelled("batch_size"),
            f"gives training batches of {batch} sample but the network's last stage has {height}x{width} feature"
            " maps, where batch norm needs at least 2 values per channel: use a batch size of 2 or more"
            " (under torchrun, at least 2 per process)",
        )


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Weight decay on conv and linear weights only: decaying BN scales and biases only hurts."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def sgd(model: nn.Module, settings: Settings) -> torch.optim.SGD:
    """The optimizer of every training here: SGD with the settings' momentum (Nesterov when asked and
    there is momentum), weight decay per :func:`param_groups`, starting at the settings' peak LR."""
    return torch.optim.SGD(
        param_groups(model, settings.weight_decay),
        lr=settings.lr,
        momentum=settings.momentum,
        nesterov=settings.nesterov and settings.momentum > 0,
    )


class Trainer:
    """Trains ``model`` on ``data`` (already on ``device``) per ``settings``; ``fit`` runs it once."""

    def __init__(
        self,
        model: nn.Module,
        data: Dataset,
        settings: Settings,
        device: torch.device,
        seed: int,
        stop: StopControl | None = None,
        on_epoch: Callable[[EpochStats], None] | None = None,
        augment: Augment | None = None,
        world: World | None = None,
    ) -> None:
        self.settings = settings
        self.world = world or World()
        self.augment = augment
        self.device = device
        self.data = data
        self.stop = stop or StopControl()
        self.on_epoch = on_epoch or (lambda stats: None)
        cuda = device.type == "cuda"
        self.channels_last = cuda and settings.channels_last
        self.model = model.to(device, memory_format=torch.channels_last) if self.channels_last else model.to(device)
        self.network: nn.Module = self.model
        if settings.compile:
            import torch._dynamo as dynamo  # imported here: it costs seconds and most trials do not compile

            # a candidate the compiler cannot handle still trains, eagerly, rather than failing the trial
            dynamo.config.suppress_errors = True
            self.network = torch.compile(self.model)  # type: ignore[assignment]
        #: what training steps call: the network itself, or wrapped in DDP under torchrun (evaluation never syncs)
        self.train_network: nn.Module = self.network
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if cuda and device.index is not None else None
            self.train_network = DistributedDataParallel(self.network, device_ids=ids)
        self.use_amp = cuda and settings.amp
        self.optimizer = sgd(self.model, settings)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
        self.shuffle_generator = torch.Generator().manual_seed(seed)
        self.augment_generator = torch.Generator(device=device).manual_seed(seed + 1 + self.world.rank)
        self.seed = seed
        augment = settings.augment if settings.augment is not None else data.natural
        side = data.sample_shape[1]
        self.crop_pad = max(1, side // 8) if augment and side >= 8 else 0
        self.flip = bool(augment and data.natural)
        self.step = 0
        batch = self._rank_batch_size() if self.world.distributed else settings.batch_size
        check_batch_for_batch_norm(self.model, batch, data.sample_shape, settings)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.use_amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)  # type: ignore[return-value]
        return contextlib.nullcontext()

    def network_input(self, stored: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self.augment is not None:
            x = self.data.from_unit(self.augment(self.data.to_unit(stored), self.augment_generator))
        else:
            x = self.data.prepare(stored)
        if train and (self.crop_pad or self.flip):
            x = random_crop_flip(x, self.crop_pad, self.flip, self.augment_generator)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _batches(self, epoch: int = 0) -> list[torch.Tensor]:
        n, size = len(self.data.y_train), self.settings.batch_size
        if self.world.distributed:
            return self._shard_batches(epoch)
        order = torch.randperm(n, generator=self.shuffle_generator).to(self.device)
        return list(order.split(size))[: batch_count(n, size)]

    def _rank_batch_size(self) -> int:
        """Per-process batch under torchrun: the global batch (``batch_size``) split over the ranks."""
        return max(1, self.settings.batch_size // self.world.size)

    def _steps_per_epoch(self) -> int:
        n = len(self.data.y_train)
        if not self.world.distributed:
            return batch_count(n, self.settings.batch_size)
        return batch_count(math.ceil(n / self.world.size), self._rank_batch_size())

    def _shard_batches(self, epoch: int) -> list[torch.Tensor]:
        """This rank's batches of ``epoch``: its DistributedSampler shard (equal lengths on every rank)."""
        from torch.utils.data import DistributedSampler

        n = len(self.data.y_train)
        sampler = DistributedSampler(
            range(n), num_replicas=self.world.size, rank=self.world.rank, shuffle=True, seed=self.seed
        )
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long).to(self.device)
        return list(order.split(self._rank_batch_size()))[: self._steps_per_epoch()]

    def _stop_reason(self) -> str | None:
        """Why to stop before the next step; under torchrun agreed by all ranks every few steps."""
        if not self.world.distributed:
            return self.stop.reason()
        if self.step % STOP_SYNC_STEPS:
            return None
        return agreed_stop(self.stop.reason(), self.device)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def evaluate(self) -> Evaluation:
        """Validation cross-entropy (without label smoothing) and accuracy of the current weights."""
        self.model.eval()
        x_val, y_val = self.data.x_val, self.data.y_val
        loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        with torch.no_grad():
            for start in range(0, len(y_val), self.settings.eval_batch_size):
                end = start + self.settings.eval_batch_size
                target = y_val[start:end]
                with self.autocast():
                    out = self.network(self.network_input(x_val[start:end], train=False))
                loss += F.cross_entropy(out.float(), target, reduction="sum")
                correct += (out.argmax(1) == target).sum()
        self.model.train()
        n = max(1, len(y_val))
        return Evaluation(loss=float(loss) / n, accuracy=int(correct) / n, step=self.step)

    def fit(self) -> FitResult:
        """Train for ``epochs`` or until a stop; the final evaluation is of the weights training ended with.

        On a signal, the most recent evaluation is reported as is when there is one, so the trial
        answers within the grace period even when validation is slow; otherwise the current weights
        are evaluated.
        """
        settings = self.settings
        x_train, y_train = self.data.x_train, self.data.y_train
        steps_per_epoch = self._steps_per_epoch()
        total = settings.epochs * steps_per_epoch
        history: list[EpochStats] = []
        last_eval: Evaluation | None = None
        stopped: str | None = None
        samples = 0
        step_seconds = 0.0
        started = time.perf_counter()
        self.model.train()
        for epoch in range(settings.epochs):
            epoch_start = time.perf_counter()
            loss_sum = torch.zeros((), device=self.device)
            correct = torch.zeros((), device=self.device, dtype=torch.long)
            seen = 0
            lr = settings.lr
            for idx in self._batches(epoch):
                stopped = self._stop_reason()
                if stopped:
                    break
                lr = lr_at(self.step, total, settings, steps_per_epoch)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                target = y_train[idx]
                with self.autocast():
                    out = self.train_network(self.network_input(x_train[idx], train=True))
                    loss = self.criterion(out, target)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                loss_sum += loss.detach() * len(idx)
                correct += (out.detach().argmax(1) == target).sum()
                seen += len(idx)
                self.step += 1
            if self.world.distributed:  # the epoch's figures over all ranks: every rank judges the same loss
                counts = torch.stack([loss_sum.float(), correct.float(), torch.tensor(float(seen), device=self.device)])
                totals = sum_over_ranks(counts)
                loss_sum, correct, seen = totals[0], totals[1].round().long(), int(totals[2].round())
            self._sync()
            step_seconds += time.perf_counter() - epoch_start
            samples += seen
            if seen == 0:
                break
            train_loss = float(loss_sum) / seen
            if not math.isfinite(train_loss):
                stopped = "diverged"
            val: Evaluation | None = None
            due = settings.eval_every and (epoch + 1) % settings.eval_every == 0
            if not stopped and (due or epoch + 1 == settings.epochs):
                val = last_eval = self.evaluate()
            stats = EpochStats(epoch + 1, train_loss, int(correct) / seen, lr, time.perf_counter() - epoch_start, val)
            history.append(stats)
            self.on_epoch(stats)
            if stopped:
                break
        reusable = last_eval is not None and (stopped == "signal" or last_eval.step == self.step)
        final = last_eval if reusable and last_eval is not None else self.evaluate()
        self._sync()
        return FitResult(
            final=final,
            steps=self.step,
            epochs=self.step / max(1, steps_per_epoch),
            samples=samples,
            step_seconds=step_seconds,
            train_seconds=time.perf_counter() - started,
            stopped=stopped,
            history=history,
        )


if __name__ == "__main__":  # a library module (main imports it): say where the entry point is, do not no-op
    import sys

    sys.exit(
        "kubenas_trainer.train is the training loop, not a command: run a trial with kubenas-trainer"
        " (or python3 -m kubenas_trainer.main)"
    )

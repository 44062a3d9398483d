"""ENAS path sampling while the supernet trains (``oneShot.sampling: enas``, Pham et al. 2018).

The training alternates rounds. A round draws ``steps + pathsPerBatch`` paths from the controller's
policy in one request (:class:`kubenas_trainer.paths.PathsClient`): the first ``steps`` are the
paths of the round's training steps, one per step; the other ``pathsPerBatch`` are scored once the
round's steps are done, each on its own validation minibatch (the next in turn through the
validation split) with the shared weights, and each path's accuracy goes back to the policy as its
own reward. ``steps`` is an epoch's steps over ``batchesPerEpoch``. The first ``warmupEpochs``
epochs train on uniform paths and reward nothing.

Batch norm while scoring: each path is run in training mode on its minibatch, so it normalizes with
that minibatch's own statistics (as ENAS does), and the running statistics are left untouched
(momentum 0 meanwhile). Re-estimating them per path as phase 2 does would cost
``recalibrationBatches`` more forward passes per path, more than the round's training itself.

A path the policy draws may have no input-to-output route (all its edges into the output ``none``).
For training it is replaced by the round's buildable paths in turn (a uniform one when the round has
none); as a rewarded path it is reported with no reward, which the policy takes as the worst reward
seen so far, so it learns to avoid such cells.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kubenas_trainer.data import Dataset
from kubenas_trainer.errors import BadCandidate
from kubenas_trainer.paths import PathsClient
from kubenas_trainer.supernet import SuperNetwork

#: the trainer's record of paths and rewards, written beside the checkpoint
RECORD_FILE = "paths.jsonl"


class PolicyPaths:
    """A :class:`~kubenas_trainer.supernet.PathSource`: the policy's paths, and rounds of per-path rewards."""

    def __init__(
        self,
        client: PathsClient,
        supernet: SuperNetwork,
        data: Dataset,
        batch_size: int,
        steps_per_epoch: int,
        generator: torch.Generator,
    ) -> None:
        enas = client.enas
        self.client = client
        self.supernet = supernet
        self.data = data
        self.batch_size = batch_size
        self.paths_per_batch = int(enas.get("pathsPerBatch", 16))
        self.round_steps = max(1, steps_per_epoch // int(enas.get("batchesPerEpoch", 2)))
        self.warmup_steps = int(enas.get("warmupEpochs", 0)) * steps_per_epoch
        self.generator = generator
        self.steps = 0
        self.rounds = 0
        self.rewarded = 0
        self.unbuildable = 0
        self._queue: deque[dict[str, str]] = deque()
        self._pending: list[dict[str, Any]] = []
        self._cursor = 0  # the next validation minibatch
        client.start()

    def next_path(self) -> dict[str, str]:
        self.steps += 1
        if self.steps <= self.warmup_steps:
            return self.supernet.space.sample(self.generator)
        if not self._queue:
            self.finish()
            self._next_round()
        return self._queue.popleft()

    def finish(self) -> None:
        """Score and reward the paths of the round whose training steps are done (if any)."""
        if not self._pending:
            return
        rewards = [(int(p["index"]), self._score(p["architecture"])) for p in self._pending]
        self.client.reward(rewards)
        self.rewarded += len(rewards)
        self._pending = []

    def _next_round(self) -> None:
        drawn = self.client.draw(self.round_steps + self.paths_per_batch)
        train, self._pending = drawn[: self.round_steps], drawn[self.round_steps :]
        buildable = [p["architecture"] for p in train if self._buildable(p["architecture"])]
        self.unbuildable += len(train) - len(buildable)
        if not buildable:
            buildable = [self.supernet.space.sample(self.generator)]
        self._queue.extend(
            p["architecture"] if self._buildable(p["architecture"]) else buildable[i % len(buildable)]
            for i, p in enumerate(train)
        )
        self.rounds += 1

    def _buildable(self, architecture: dict[str, str]) -> bool:
        try:
            self.supernet.space.candidate(architecture)
        except BadCandidate:
            return False
        return True

    def _score(self, architecture: dict[str, str]) -> float | None:
        """The path's accuracy on the next validation minibatch with the shared weights (None: unbuildable)."""
        try:
            candidate = self.supernet.space.candidate(architecture)
        except BadCandidate:
            self.unbuildable += 1
            return None
        n = len(self.data.y_val)
        start = self._cursor if self._cursor < n else 0
        end = min(n, start + self.batch_size)
        self._cursor = end
        x, y = self.data.prepare(self.data.x_val[start:end]), self.data.y_val[start:end]
        self.supernet.use(candidate)
        with torch.no_grad(), batch_statistics(self.supernet):
            out = self.supernet(x)
        return float((out.argmax(1) == y).float().mean())

    def write_record(self, folder: Path) -> None:
        """The paths drawn and their rewards, one JSON line per path (``paths.jsonl``)."""
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / RECORD_FILE).open("w") as out:
            for path in self.client.record:
                out.write(json.dumps(path) + "\n")

    def figures(self) -> dict[str, float]:
        return {
            "policy_rounds": float(self.rounds),
            "rewarded_paths": float(self.rewarded),
            "unbuildable_paths": float(self.unbuildable),
            "policy_replays": float(self.client.replays - 1),
        }


class batch_statistics:
    """Batch norm in training mode on the batch's own statistics, the running statistics left as they were."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.saved: list[tuple[bool, float | None]] = []

    def __enter__(self) -> None:
        self.saved = [(bn.training, bn.momentum) for bn in self.norms]
        for bn in self.norms:
            bn.train()
            bn.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged

    def __exit__(self, *exc: object) -> None:
        for bn, (training, momentum) in zip(self.norms, self.saved, strict=True):
            bn.train(training)
            bn.momentum = momentum

"""Data-parallel training under torchrun: who this process is, and the few collectives the loop needs.

A trial that asks for N > 1 GPUs is started as ``torchrun --nproc-per-node N ...`` in one pod (or one
local process group); torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``. Without them the
trainer is one process, exactly as before. Every rank builds the same network from the same seed,
trains on its shard of each epoch (``DistributedSampler``) inside ``DistributedDataParallel``, and
only rank 0 reports: progress lines, the result file (the termination message) and the outputs, so a
trial's result has the same form whatever its process count.

All ranks must take the same number of steps, or a gradient all-reduce waits forever. Shards have
equal lengths (the sampler pads), and the two decisions that can end an epoch early are agreed on:
the stop check (a signal or the deadline seen by any rank stops all) and divergence (judged on the
epoch's loss summed over ranks).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from kubenas_trainer.errors import ContractError

ENV_RANK = "RANK"
ENV_LOCAL_RANK = "LOCAL_RANK"
ENV_WORLD_SIZE = "WORLD_SIZE"
#: how many steps apart the ranks agree on stopping: an all-reduce per step would cost a host sync
STOP_SYNC_STEPS = 8


@dataclass(frozen=True)
class World:
    """This process's place among the trial's processes; ``size`` 1 is the plain single process."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Whether this process reports (progress, result file, outputs)."""
        return self.rank == 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> World:
        """torchrun's ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``; absent, one process."""
        values: dict[str, int] = {}
        for name, default in ((ENV_RANK, 0), (ENV_LOCAL_RANK, 0), (ENV_WORLD_SIZE, 1)):
            text = env.get(name, "").strip()
            try:
                values[name] = int(text) if text else default
            except ValueError:
                raise ContractError(name, f"must be an integer (set by torchrun), got {text!r}") from None
        world = cls(values[ENV_RANK], values[ENV_LOCAL_RANK], values[ENV_WORLD_SIZE])
        if world.size < 1 or not 0 <= world.rank < world.size or world.local_rank < 0:
            raise ContractError(ENV_RANK, f"rank {world.rank} of world size {world.size} is not a place in it")
        return world


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def start(world: World, device: torch.device) -> None:
    """Join the trial's process group (torchrun's rendezvous gives the address through the environment)."""
    if not world.distributed or dist.is_initialized():
        return
    # 1x1 convolution weights get gradients whose strides differ from DDP's buckets only on size-1
    # dimensions; the reducer copies them either way, so its warning (one per rank) says nothing useful
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


def finish(world: World) -> None:
    """Leave the process group (no collective is pending once training has ended on every rank)."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over all ranks (as is in one process)."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


STOP_REASONS = (None, "deadline", "signal")


def agreed_stop(reason: str | None, device: torch.device) -> str | None:
    """The stop reason of the whole trial: the strongest one any rank saw (a signal before a deadline)."""
    if not (dist.is_available() and dist.is_initialized()):
        return reason
    value = torch.tensor([float(STOP_REASONS.index(reason))], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return STOP_REASONS[int(value.item())]


def place(world: World, device: torch.device) -> torch.device:
    """Each rank on its own GPU: torchrun's LOCAL_RANK indexes the GPUs the process sees."""
    if world.distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", world.local_rank)
    return device

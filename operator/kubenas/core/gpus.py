"""GPUs a trial asks for, and how a trial that asks for several is started.

One rule for the operator's trainer pods and for local mode: a trial whose trainer asks for N > 1
GPUs (``nvidia.com/gpu`` in ``resources``) runs data-parallel, N processes started by torchrun in one
pod or one local process group (the trainer detects the world size from torchrun's variables, see
docs/trainer.md). A command that already starts torchrun is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubenas.api.template import trainer_container
from kubenas.api.v1alpha1 import Resources, TrialTemplate

GPU_RESOURCE = "nvidia.com/gpu"
#: torchrun for one node: ``--standalone`` picks a free local rendezvous port, so parallel trials on one
#: machine never collide; ``--no-python`` runs the trial's command as it is (a script or ``python -m ...``)
TORCHRUN = ("torchrun", "--standalone", "--nnodes", "1")
_LAUNCHERS = ("torchrun", "torch.distributed.run", "torch.distributed.launch")


def gpus_of(resources: Resources) -> float:
    """GPUs one container holds (:meth:`Resources.gpus`: limits win, as the scheduler counts them)."""
    return resources.gpus()


def _count(value: Any) -> float:
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return 0.0


@dataclass(frozen=True)
class GpuRequest:
    """How many GPUs each trial asks for, and the field that says so (for errors)."""

    count: int
    field: str


def trial_gpus(template: TrialTemplate) -> GpuRequest:
    """The GPUs of one trial: the short form's ``resources``, else the trainer container's in ``template``."""
    short = f"spec.trialTemplate.resources.limits[{GPU_RESOURCE}]"
    if template.resources.limits or template.resources.requests:
        return GpuRequest(int(gpus_of(template.resources)), short)
    if template.template is not None:
        container = trainer_container(template.template.spec) or {}
        containers = list(template.template.spec.get("containers") or [])
        index = next((i for i, c in enumerate(containers) if c is container), 0)
        resources: Mapping[str, Any] = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        value = limits.get(GPU_RESOURCE, requests.get(GPU_RESOURCE, 0))
        field = f"spec.trialTemplate.template.spec.containers[{index}].resources.limits[{GPU_RESOURCE}]"
        return GpuRequest(int(_count(value)), field)
    return GpuRequest(0, short)


def starts_torchrun(command: Sequence[str]) -> bool:
    """Whether ``command`` already starts torchrun (``torchrun ...``, ``python -m torch.distributed.run ...``)."""
    return any(part.rsplit("/", 1)[-1] in _LAUNCHERS for part in command[:3])


def launcher_command(command: Sequence[str], gpus: int) -> list[str]:
    """The command a trial runs: ``command`` itself for up to one GPU, else under torchrun, one process per GPU."""
    if gpus <= 1 or starts_torchrun(command):
        return list(command)
    return [*TORCHRUN, "--nproc-per-node", str(gpus), "--no-python", *command]

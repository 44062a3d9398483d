"""GPU isolation in local mode: parallel trials get disjoint GPUs, and never more trials than GPUs allow.

On Kubernetes the scheduler and the device plugin give each trainer pod its own GPUs; on one machine
``kubenas run`` does it: each trial that asks for ``nvidia.com/gpu: N`` (``trialTemplate.resources``)
gets N devices of its own through ``CUDA_VISIBLE_DEVICES``, parallel trials are capped at what the
devices allow (the driver is given that cap, so it asks for no more), and a run whose single trial
asks for more GPUs than the machine has is refused before it starts. Trials that ask for no GPU keep
the environment they were given.

The devices come from a probe that imports nothing (the operator package never imports torch):
``KUBENAS_LOCAL_GPUS`` when set (a device count, for tests and for machines whose GPUs the probe
cannot see), else ``CUDA_VISIBLE_DEVICES`` when set (the run shares out only those), else the GPUs
``nvidia-smi -L`` lists, else none.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.gpus import TORCHRUN, GpuRequest, launcher_command, starts_torchrun, trial_gpus

#: a device count that replaces the probe (tests use it to fake a machine's GPUs)
ENV_GPU_COUNT = "KUBENAS_LOCAL_GPUS"
ENV_VISIBLE = "CUDA_VISIBLE_DEVICES"
_GPU_LINE = re.compile(r"^GPU (\d+):")


class GpuError(ValueError):
    """The run cannot give its trials the GPUs they ask for; ``field`` names what asks for them."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


def probe_devices(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids this run may hand out (what ``CUDA_VISIBLE_DEVICES`` of a trial will name)."""
    env = os.environ if env is None else env
    fake = env.get(ENV_GPU_COUNT, "").strip()
    if fake:
        if not fake.isdigit():
            raise GpuError(ENV_GPU_COUNT, f"must be a device count (a whole number), got {fake!r}")
        return [str(i) for i in range(int(fake))]
    if ENV_VISIBLE in env:
        return [d.strip() for d in env[ENV_VISIBLE].split(",") if d.strip()]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listed.returncode != 0:
        return []
    return [m.group(1) for line in listed.stdout.splitlines() if (m := _GPU_LINE.match(line.strip()))]


class GpuPool:
    """The devices of the machine, each held by at most one running trial attempt at a time.

    ``acquire`` waits for enough free devices (the driver's cap means it normally never has to);
    ``release`` is idempotent, since an attempt's exit is seen both by its stopper and its follower.
    """

    def __init__(self, devices: list[str]) -> None:
        self.devices = list(devices)
        self._free = list(devices)
        self._held: dict[object, list[str]] = {}
        self._changed = threading.Condition()

    def acquire(self, owner: object, count: int) -> list[str]:
        if count > len(self.devices):
            raise GpuError("gpus", f"{count} asked for, {len(self.devices)} on this machine")
        with self._changed:
            while len(self._free) < count:
                self._changed.wait()
            taken, self._free = self._free[:count], self._free[count:]
            self._held[owner] = taken
            return list(taken)

    def release(self, owner: object) -> None:
        with self._changed:
            taken = self._held.pop(owner, None)
            if taken:
                self._free = sorted(self._free + taken, key=self.devices.index)
                self._changed.notify_all()

    @property
    def free(self) -> int:
        with self._changed:
            return len(self._free)


@dataclass
class GpuPlan:
    """What each trial asks for, the pool it takes from, and how many trials may run at once."""

    request: GpuRequest
    pool: GpuPool | None

    @property
    def per_trial(self) -> int:
        return self.request.count

    @property
    def parallel(self) -> int | None:
        """The most GPU trials at once on this machine; None when trials ask for no GPU."""
        if self.pool is None:
            return None
        return len(self.pool.devices) // self.per_trial

    def limit(self, spec: SearchExperimentSpec) -> SearchExperimentSpec:
        """``spec`` with ``parallelTrials`` lowered to what the GPUs allow (unchanged when they allow it)."""
        cap = self.parallel
        if cap is None or cap >= spec.budget.parallel_trials:
            return spec
        return spec.model_copy(update={"budget": spec.budget.model_copy(update={"parallel_trials": cap})})

    def command(self, command: list[str]) -> list[str]:
        """The trial's command: under torchrun, one process per GPU, when a trial asks for several."""
        return launcher_command(command, self.per_trial)


def plan(spec: SearchExperimentSpec, env: Mapping[str, str] | None = None) -> GpuPlan:
    """The GPU plan of a run on this machine; refuses what it cannot give (:class:`GpuError` naming the field)."""
    request = trial_gpus(spec.trial_template)
    if request.count <= 0:
        return GpuPlan(request, None)
    devices = probe_devices(env)
    if request.count > len(devices):
        found = f"{len(devices)} GPU{'s' if len(devices) != 1 else ''}"
        raise GpuError(
            request.field,
            f"each trial asks for {request.count} GPUs, but this machine has {found} (probed with"
            f" {ENV_GPU_COUNT}, {ENV_VISIBLE} or nvidia-smi -L)",
        )
    command = [*spec.trial_template.command, *spec.trial_template.args]
    if request.count > 1 and not starts_torchrun(command) and shutil.which(TORCHRUN[0]) is None:
        raise GpuError(request.field, f"{request.count} GPUs per trial run under torchrun, which is not on PATH")
    return GpuPlan(request, GpuPool(devices))

"""Training settings: ``KUBENAS_SETTINGS`` with hyperparameter decisions of the same name on top.

The search decides some of these per candidate (``lr``, ``width``, ...) and the experiment fixes the
rest, so a hyperparameter decision named like a setting overrides it for that trial. Unknown settings
are refused (a typo such as ``epoch`` would otherwise silently train with the default), while unknown
hyperparameters are only reported: they may be meant for another trainer reading the same space.
Keys may be written camelCase, like the rest of a manifest, or snake_case, like decision names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from kubenas_trainer.errors import SettingsError


class Settings(BaseModel):
    """Every knob of the trainer, with defaults that train a small network on a small dataset well."""

    # allow_inf_nan=False: NaN passes every bound check, so without it ``lr: NaN`` is refused with a
    # misleading "less than or equal to 100" (and ``warmupEpochs: .inf`` is not refused at all)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # data
    dataset: str = Field(
        "digits",
        description="digits | iris | wine | breast_cancer | synthetic | cifar10:<path> | imagefolder:<path>",
    )
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of each class held out for validation.")
    split_seed: int = Field(
        0, ge=0, description="Seed of the train/validation split; the same for every trial so rewards compare."
    )
    image_size: int | None = Field(
        None, ge=1, le=1024, description="Side of ImageFolder, synthetic and shapes images; digits are resized to it."
    )
    augment: bool | None = Field(None, description="Random crop (+flip on natural images); default per dataset.")
    augment_policy: Literal["auto", "none", "randaugment", "trivialaugment"] = Field(
        "auto",
        description="auto: the searched policy when the architecture holds aug_* decisions, else none; "
        "randaugment (randaugment_n, randaugment_m) or trivialaugment: a fixed policy. Applied before crop/flip.",
    )
    randaugment_n: int = Field(2, ge=1, le=14, description="RandAugment: operations per image.")
    randaugment_m: int = Field(9, ge=0, le=30, description="RandAugment: magnitude bin of 0..30.")
    synthetic_samples: int = Field(1000, ge=2, le=1_000_000, description="Samples of the synthetic dataset.")
    synthetic_classes: int = Field(10, ge=2, le=1000, description="Classes of the synthetic dataset.")
    synthetic_channels: int = Field(3, ge=1, le=64, description="Channels of the synthetic dataset.")
    # network
    width: int = Field(16, ge=1, le=4096, description="Channels of the first stage (doubled at each reduction).")
    stages: int = Field(3, ge=1, le=8, description="Resolution stages; a reduction block sits between two.")
    cells_per_stage: int = Field(2, ge=1, le=64, description="Cells stacked in each stage.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the classifier.")
    # optimisation
    epochs: int = Field(10, ge=1, le=100_000, description="Passes over the training split.")
    batch_size: int = Field(128, ge=1, le=65536, description="Training batch size.")
    eval_batch_size: int = Field(1024, ge=1, le=65536, description="Evaluation batch size.")
    lr: float = Field(0.1, gt=0, le=100, description="Peak learning rate of SGD.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (Nesterov).")
    nesterov: bool = Field(True, description="Nesterov momentum.")
    weight_decay: float = Field(5e-4, ge=0, le=1, description="L2 on conv and linear weights (not on BN/biases).")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Label smoothing of the training loss.")
    schedule: Literal["cosine", "onecycle", "constant"] = Field("cosine", description="Per-step LR schedule.")
    warmup_epochs: float = Field(
        0.0, ge=0, le=100_000, description="Linear warm-up before the cosine decay (at most the epochs' maximum)."
    )
    # run
    time_budget_s: float | None = Field(
        None, gt=0, description="Stop training this many seconds after start and report partial metrics."
    )
    eval_every: int = Field(1, ge=0, description="Validate every N epochs (0: only at the end).")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$", description="auto picks CUDA when present.")
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU).")
    channels_last: bool = Field(True, description="channels_last memory format on CUDA (ignored on CPU).")
    compile: bool = Field(False, description="torch.compile the network (falls back to eager on failure).")
    deterministic: bool | None = Field(
        None, description="Deterministic kernels; default: on for CPU, off for CUDA (speed)."
    )
    threads: int | None = Field(None, ge=1, le=1024, description="CPU threads for torch (default: torch's own).")
    latency_runs: int = Field(20, ge=1, le=10000, description="Timed batch-1 forward passes for latency_ms.")

    #: where each given setting came from, as the user spelled it (``settings.batchSize``,
    #: ``architecture.lr``); errors raised after validation name it with :meth:`spelled`
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def spelled(self, name: str) -> str:
        """``name`` (snake_case) as the user wrote it, for error fields: ``settings.augmentPolicy`` for a key
        written camelCase, ``architecture.batch_size`` for a decision; camelCase for a default, since
        manifests are camelCase."""
        return self._sources.get(name) or f"settings.{camel_case(name)}"


SETTING_NAMES: frozenset[str] = frozenset(Settings.model_fields)


def snake_case(key: str) -> str:
    """``timeBudgetS`` -> ``time_budget_s``: manifests are camelCase, Python and decision names snake_case."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def camel_case(name: str) -> str:
    """``time_budget_s`` -> ``timeBudgetS``: how a manifest spells a setting."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def resolve_settings(settings: Mapping[str, Any], architecture: Mapping[str, Any]) -> tuple[Settings, list[str]]:
    """Settings for one trial and the hyperparameters this trainer ignores.

    Setting keys may be camelCase (as the rest of a manifest) or snake_case. ``architecture`` may be the
    whole architecture: cell edges, layers and augmentation decisions are not settings and are skipped here. Errors name
    ``settings.<key>`` or ``architecture.<key>`` as spelled where the value came from.
    """
    spelled: dict[str, str] = {}
    merged: dict[str, Any] = {}
    for key, value in settings.items():
        name = snake_case(key)
        if name in spelled:
            raise SettingsError(f"settings.{key}", f"repeats {spelled[name]}")
        spelled[name] = f"settings.{key}"
        merged[name] = value
    hyper = {k: v for k, v in architecture.items() if not k.startswith(("edge_", "layer_", "aug_"))}
    ignored = sorted(k for k in hyper if k not in SETTING_NAMES)
    for key in sorted(set(hyper) - set(ignored)):
        spelled[key] = f"architecture.{key}"
        merged[key] = hyper[key]
    try:
        resolved = Settings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        field = spelled.get(name, f"settings.{name}" if name else "settings")
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = f"is not a setting of this trainer (known: {', '.join(sorted(SETTING_NAMES))})"
        elif first["type"] == "finite_number":
            message = "must be a finite number (NaN and infinity are refused)"
        raise SettingsError(field, message) from None
    resolved._sources.update(spelled)
    return resolved, ignored

"""The augmentation-policy space (``spec.searchSpace.augmentation``), searched like an architecture.

AutoAugment's policy (Cubuk et al., 2019) is K sub-policies of two operations, each operation with a
probability and a magnitude, both discretised into bins. The core expands this model into ordinary
categorical decisions (``kubenas.core.augment``), so every strategy searches it without knowing what
it is, alone or together with a cell, a layer chain and hyperparameters.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator

from kubenas.api.base import SET_LIST, ApiModel

AugmentOperation = Literal[
    "identity",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "auto_contrast",
    "invert",
    "equalize",
    "solarize",
    "posterize",
    "contrast",
    "color",
    "brightness",
    "sharpness",
    "cutout",
]
#: AutoAugment's operations (sample pairing left out: it mixes images, not a per-image operation),
#: plus identity (so a sub-policy can do less) and Cutout.
AUGMENT_OPERATIONS: tuple[str, ...] = get_args(AugmentOperation)

#: what a trial with a searched policy leaves in its output folder: the policy with its torchvision calls,
#: and a few lines that apply it (written by the trainer, copied by ``kubenas export``)
POLICY_FILE = "augment_policy.json"
SNIPPET_FILE = "augment_policy.py"


class AugmentationSpace(ApiModel):
    """An AutoAugment policy: ``subPolicies`` sub-policies of ``operationsPerSubPolicy`` operations each.

    Every operation slot is three decisions: which operation, its probability bin (bin ``i`` of
    ``probabilityBins`` means ``i / (probabilityBins - 1)``) and its magnitude bin (bin ``i`` of
    ``magnitudeBins`` means ``i / (magnitudeBins - 1)`` of the operation's largest magnitude, scaled to
    the image size by the trainer). The trainer draws one sub-policy per image.
    """

    sub_policies: int = Field(5, ge=1, le=16, description="Sub-policies in the policy (one is drawn per image).")
    operations_per_sub_policy: int = Field(2, ge=1, le=4, description="Operations applied in turn by a sub-policy.")
    operations: list[AugmentOperation] = Field(
        default_factory=lambda: list(AUGMENT_OPERATIONS),
        min_length=1,
        max_length=len(AUGMENT_OPERATIONS),
        json_schema_extra=SET_LIST,
        description="Operations a slot can take: " + ", ".join(AUGMENT_OPERATIONS) + ".",
    )
    probability_bins: int = Field(11, ge=2, le=101, description="Probability levels, from 0 to 1 inclusive.")
    magnitude_bins: int = Field(10, ge=2, le=31, description="Magnitude levels, from none to the largest inclusive.")

    @field_validator("operations")
    @classmethod
    def _distinct(cls, operations: list[str]) -> list[str]:
        if len(set(operations)) != len(operations):
            raise ValueError("operations must be distinct")
        return operations

"""Free-form trainer settings: the type ``trialTemplate.settings`` and ``oneShot.supernetSettings`` share.

Settings reach the trainer as one environment variable, ``KUBENAS_SETTINGS`` (JSON), and Linux caps a
single environment string at 128 KiB (``MAX_ARG_STRLEN``): past it the container cannot even start,
and every trial would fail the same way. Hence two bounds, the number of keys and the encoded size.

The API server enforces the first only. The values are free-form JSON, which a structural schema can
hold only as ``x-kubernetes-preserve-unknown-fields``, and CEL cannot see inside those fields, so no
schema rule can measure them. The size is checked by the model itself: ``kubenas validate`` refuses
the manifest, and the operator, which parses every spec with the same model, fails the experiment
at once with ``InvalidSpec`` naming the field instead of creating trials that cannot start.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, Field

#: the most keys settings may have
MAX_SETTINGS_KEYS = 64
#: the most bytes settings may take as compact JSON: half the kernel's 128 KiB cap on one environment
#: string, leaving the rest of the trial's environment (architecture, hyperparameters, paths) room
MAX_SETTINGS_BYTES = 64 * 1024


def bounded(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` if they fit one environment variable as JSON; a ValueError saying by how much not."""
    size = len(json.dumps(settings, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_SETTINGS_BYTES:
        raise ValueError(
            f"settings take {size:,} bytes as JSON, more than the {MAX_SETTINGS_BYTES:,} allowed: they travel"
            " in one environment variable (Linux caps it at 128 KiB); pass large data as a file instead"
        )
    return settings


#: settings as the API holds them: at most 64 keys and 64 KiB as JSON
Settings = Annotated[dict[str, Any], Field(max_length=MAX_SETTINGS_KEYS), AfterValidator(bounded)]

__all__ = ["MAX_SETTINGS_BYTES", "MAX_SETTINGS_KEYS", "Settings", "bounded"]

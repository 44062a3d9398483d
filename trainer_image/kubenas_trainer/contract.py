"""The trial contract's inputs, read from the environment (docs/trial-contract.md).

Kept free of the kubenas package on purpose: any image that sets these variables can run this
trainer, and this trainer must keep running when the operator's models change shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubenas_trainer.errors import ContractError

ENV_ARCHITECTURE = "KUBENAS_ARCHITECTURE"
ENV_ARCHITECTURE_ID = "KUBENAS_ARCHITECTURE_ID"
ENV_SEARCH_SPACE = "KUBENAS_SEARCH_SPACE"
ENV_SETTINGS = "KUBENAS_SETTINGS"
ENV_TRIAL = "KUBENAS_TRIAL"
ENV_EXPERIMENT = "KUBENAS_EXPERIMENT"
ENV_SEED = "KUBENAS_SEED"
ENV_RESULT_FILE = "KUBENAS_RESULT_FILE"
ENV_OUTPUT_DIR = "KUBENAS_OUTPUT_DIR"
ENV_INIT_WEIGHTS = "KUBENAS_INIT_WEIGHTS"

#: seeds are < 2**63 so that every generator seeded from one (seed + 1 + rank, seed + 4, ...) stays
#: within what torch.Generator.manual_seed accepts (< 2**64) with room to spare
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class TrialContext:
    """Everything the contract hands one trial."""

    architecture: dict[str, Any]
    architecture_id: str
    search_space: dict[str, Any] | None
    settings: dict[str, Any]
    trial: str
    experiment: str
    seed: int
    result_file: Path | None
    output_dir: Path | None
    #: a trial output folder or model.pt to start from (the parent's, or initFrom's checkpoint)
    init_weights: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TrialContext:
        """Read the contract's variables; only ``KUBENAS_ARCHITECTURE`` is required."""
        architecture = _json_object(env, ENV_ARCHITECTURE)
        if architecture is None:
            raise ContractError(ENV_ARCHITECTURE, "is not set: it must hold the architecture as a JSON object")
        seed = read_seed(env)
        result = env.get(ENV_RESULT_FILE, "").strip()
        output = env.get(ENV_OUTPUT_DIR, "").strip()
        init = env.get(ENV_INIT_WEIGHTS, "").strip()
        return cls(
            architecture=architecture,
            architecture_id=env.get(ENV_ARCHITECTURE_ID, "") or ",".join(f"{k}={v}" for k, v in architecture.items()),
            search_space=_json_object(env, ENV_SEARCH_SPACE),
            settings=_json_object(env, ENV_SETTINGS) or {},
            trial=env.get(ENV_TRIAL, ""),
            experiment=env.get(ENV_EXPERIMENT, ""),
            seed=seed,
            result_file=Path(result) if result else None,
            output_dir=Path(output) if output else None,
            init_weights=Path(init) if init else None,
        )


def read_seed(env: Mapping[str, str]) -> int:
    """``KUBENAS_SEED`` (0 when unset): an integer in 0..2**63-1, refused with a ContractError otherwise."""
    seed_text = env.get(ENV_SEED, "0").strip() or "0"
    try:
        seed = int(seed_text)
    except ValueError:
        raise ContractError(ENV_SEED, f"must be an integer, got {seed_text!r}") from None
    if not 0 <= seed <= MAX_SEED:
        raise ContractError(ENV_SEED, f"must be between 0 and 2**63-1 ({MAX_SEED}), got {seed}")
    return seed


def _json_object(env: Mapping[str, str], name: str) -> dict[str, Any] | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractError(name, f"is not valid JSON: {exc.msg} at char {exc.pos}") from None
    if not isinstance(value, dict):
        raise ContractError(name, f"must be a JSON object, got {type(value).__name__}")
    return value

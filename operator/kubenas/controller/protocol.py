"""The controller's wire protocol: the JSON both the service and the operator's client speak.

Endpoints (all JSON; POST ones need ``Authorization: Bearer <token>``):

- ``GET /health`` → ``{"state": State}``; also the readiness probe, so it needs no token.
- ``POST /replay`` ``{"experiment", "spec", "trials": [Record]}`` → ``{"state"}``: rebuild the
  search from the history, in recorded order. A fresh controller starts unconfigured and the first
  replay (with an empty history) configures it: starting and restarting are one code path.
- ``POST /ask`` ``{"index", "count"}`` → ``{"trials": [Record], "state"}``: candidates ``index`` ..
  ``index+count-1``. Idempotent: candidates already asked are returned as recorded, so an operator
  that crashed between asking and creating the Trial gets the same candidate again.
- ``POST /tell`` ``{"index", "name", "metrics", "failed", "reason"}`` → ``{"trial": Record, "state"}``.
  Idempotent by trial: a second tell returns the first one's record (with its tell sequence).
- ``GET /metrics``: Prometheus text format.

Every answer carries ``state`` (``instance``, ``configured``, ``asked``, ``told``): a new ``instance``
tells the operator the process restarted and must be replayed before it is asked anything.
Refusals are ``{"error": {"code", "message"}}`` with HTTP 400 (bad request), 401 (token),
409 (out of sync: replay and retry) or 422 (the history does not replay).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubenas.core.records import TrialRecord

DEFAULT_PORT = 8080

# error codes
BAD_REQUEST = "BadRequest"
UNAUTHORIZED = "Unauthorized"
NOT_CONFIGURED = "NotConfigured"
OUT_OF_SYNC = "OutOfSync"
REPLAY_MISMATCH = "ReplayMismatch"

HTTP_STATUS = {BAD_REQUEST: 400, UNAUTHORIZED: 401, NOT_CONFIGURED: 409, OUT_OF_SYNC: 409, REPLAY_MISMATCH: 422}


@dataclass(frozen=True)
class State:
    """Where the controller's search stands."""

    instance: str
    configured: bool
    asked: int
    told: int

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "configured": self.configured, "asked": self.asked, "told": self.told}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        return cls(str(data["instance"]), bool(data["configured"]), int(data["asked"]), int(data["told"]))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def record_to_json(record: TrialRecord, architecture_id: str | None = None) -> dict[str, Any]:
    """A trial record in the camelCase the Trial status uses; non-finite rewards travel as null."""
    out: dict[str, Any] = {
        "index": record.index,
        "name": record.name,
        "architecture": dict(record.architecture),
        "phase": record.phase,
        "reward": _finite(record.reward),
        "metrics": {k: v for k, v in record.metrics.items() if math.isfinite(v)},
        "reason": record.reason,
        "tellSequence": record.tell_sequence,
        "asksBeforeTell": record.asks_before_tell,
    }
    if architecture_id is not None:
        out["architectureId"] = architecture_id
    return out


def record_from_json(data: Mapping[str, Any]) -> TrialRecord:
    reward = data.get("reward")
    return TrialRecord(
        index=int(data["index"]),
        architecture=dict(data.get("architecture") or {}),
        name=str(data.get("name") or ""),
        phase=data.get("phase") or "Pending",
        reward=None if reward is None else float(reward),
        metrics={k: float(v) for k, v in (data.get("metrics") or {}).items()},
        reason=data.get("reason"),
        tell_sequence=data.get("tellSequence"),
        asks_before_tell=data.get("asksBeforeTell"),
    )

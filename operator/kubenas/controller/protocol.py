"""The controller's wire protocol: the JSON both the service and the operator's client speak.

Endpoints (all JSON; POST ones need ``Authorization: Bearer <token>``):

- ``GET /health`` → ``{"state": State}``; also the readiness probe, so it needs no token.
- ``POST /replay`` ``{"experiment", "spec", "trials": [Trial]}`` → ``{"state"}``: rebuild the
  search from the history, in recorded order. A Trial is ``{"name", "spec", "status"}`` as the Trial
  object holds them (:mod:`kubenas.core.codec`). A fresh controller starts unconfigured and the first
  replay (with an empty history) configures it: starting and restarting are one code path.
- ``POST /ask`` ``{"index", "count"}`` → ``{"candidates": [{"index", "architecture",
  "architectureId", "parents"}], "state"}``: candidates ``index`` .. ``index+count-1``. Idempotent: candidates
  already asked are returned as recorded, so an operator that crashed between asking and creating
  the Trial gets the same candidate again.
- ``POST /tell`` ``{"index", "status"}`` → ``{"told", "state"}``: the strategy learns the result the
  Trial status holds (phase, reward, metrics). Idempotent by index: a repeated tell changes nothing
  and answers ``"told": false``. What a result means and where it stands in tell order is decided by
  the operator's driver, not here: the controller only asks and tells.
- ``POST /progress`` ``{"trial", "step", "metrics"}`` → ``{"kept"}``: a trainer pod's epoch (the push
  channel). Authorized by the *trial's* credential, ``HMAC(token, trial)``, not by the token itself.
- ``POST /points`` ``{"instance", "after", "wait"}`` → ``{"points": [Point], "dropped", "state"}``: the
  operator reads the epochs posted after ``after`` (all of them when ``instance`` is not this
  process), waiting up to ``wait`` seconds for the first. See :mod:`kubenas.controller.progress`.
- ``POST /paths/replay``, ``/paths``, ``/rewards``: the ENAS path channel of a one-shot supernet
  trainer, with a path credential of its own (:mod:`kubenas.controller.paths`).
- ``GET /metrics``: Prometheus text format.

Every answer carries ``state`` (``instance``, ``configured``, ``asked``, ``told``): a new ``instance``
tells the operator the process restarted and must be replayed before it is asked anything.
Refusals are ``{"error": {"code", "message"}}`` with HTTP 400 (bad request), 401 (token),
409 (out of sync: replay and retry) or 422 (the history does not replay).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubenas.core.driver import Candidate

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


def candidate_to_json(candidate: Candidate) -> dict[str, Any]:
    return {
        "index": candidate.index,
        "architecture": dict(candidate.architecture),
        "architectureId": candidate.architecture_id,
        "parents": list(candidate.parents),
    }


def candidate_from_json(data: Mapping[str, Any]) -> Candidate:
    parents = tuple(int(i) for i in data.get("parents") or ())
    return Candidate(int(data["index"]), dict(data["architecture"]), str(data.get("architectureId") or ""), parents)

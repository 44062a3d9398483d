"""The push channel's controller side: per-trial credentials and a bounded store of reported points.

Trainer pods have no API token, so they cannot write their curves into Kubernetes. Instead each
trainer posts every epoch's metrics to its experiment's controller pod (``POST /progress``), and the
operator reads them from there (``POST /points``) and turns them into the driver's ``Progress``
events. Why these rules:

- **Credential.** A trial authenticates with ``HMAC-SHA256(controller token, trial name)``, which
  the operator puts in the trial's environment. It can report only for that trial (the controller
  recomputes the HMAC from the trial named in the body) and can do nothing else: ask, tell and replay
  still need the controller token itself, which never leaves the Secret, the operator and the
  controller pod.
- **Bounded memory.** The store keeps the newest :data:`CAPACITY` points in all, at most
  :data:`~kubenas.api.v1alpha1.MAX_CURVE_POINTS` per trial (what a Trial's curve keeps anyway), at most
  :data:`MAX_METRICS` numbers per point, and the last step of at most :data:`TRIALS_REMEMBERED` trials.
  A point at or below a trial's last step is ignored, as the driver would ignore it.
- **Nothing here is history.** Points are numbered in arrival order (``seq``); a reader asks for
  those after the last it saw. A restarted controller starts empty with a new instance id, so the
  reader starts again from 0; points it had not handed out are lost (see docs/early-stopping.md).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubenas.api.v1alpha1 import MAX_CURVE_POINTS

PROGRESS_PATH = "/progress"
POINTS_PATH = "/points"
#: points kept in all (the operator reads them within a pass; this covers a slow or restarting operator)
CAPACITY = 4096
#: numbers kept per point
MAX_METRICS = 32
MAX_METRIC_NAME = 128
#: trials whose last step is remembered (the oldest is forgotten first)
TRIALS_REMEMBERED = 4096
#: the longest a reader may wait for new points in one call
MAX_WAIT_SECONDS = 30.0
TRIAL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DOMAIN = b"kubenas-progress\0"


def trial_token(secret: str, trial: str, purpose: bytes = _DOMAIN) -> str:
    """The credential of one trial: it proves the trial's name to the controller, and nothing else.
    ``purpose`` keeps credentials of different channels apart (a progress credential draws no paths)."""
    return hmac.new(secret.encode(), purpose + trial.encode(), hashlib.sha256).hexdigest()


def token_matches(secret: str, trial: str, given: str, purpose: bytes = _DOMAIN) -> bool:
    return hmac.compare_digest(trial_token(secret, trial, purpose).encode(), given.encode())


class BadPoint(ValueError):
    """A posted point the controller refuses, with the field at fault."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True)
class Point:
    """One reported epoch of one trial, numbered in arrival order."""

    seq: int
    trial: str
    step: int
    metrics: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "trial": self.trial, "step": self.step, "metrics": dict(self.metrics)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Point:
        metrics = {str(k): float(v) for k, v in (data.get("metrics") or {}).items()}
        return cls(int(data["seq"]), str(data["trial"]), int(data["step"]), metrics)


def parse_point(data: Mapping[str, Any]) -> tuple[str, int, dict[str, float]]:
    """``(trial, step, metrics)`` of a posted body; non-finite and non-numeric metrics are dropped."""
    trial = data.get("trial")
    if not isinstance(trial, str) or not TRIAL_NAME.match(trial):
        raise BadPoint("trial", "must be the trial's name (a DNS-1123 label)")
    step = data.get("step", data.get("epoch"))
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= 10**9:
        raise BadPoint("step", "must be an integer from 0 to 1e9")
    raw = data.get("metrics")
    if not isinstance(raw, Mapping):
        raise BadPoint("metrics", "must be an object of numbers")
    metrics: dict[str, float] = {}
    for key, value in raw.items():
        if len(metrics) >= MAX_METRICS:
            break
        if not isinstance(key, str) or len(key) > MAX_METRIC_NAME:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        metrics[key] = float(value)
    return trial, step, metrics


class ProgressStore:
    """The points reported and not yet aged out (see the module docstring). Not thread-safe: the
    server calls it from its event loop only."""

    def __init__(
        self, capacity: int = CAPACITY, per_trial: int = MAX_CURVE_POINTS, trials: int = TRIALS_REMEMBERED
    ) -> None:
        self.per_trial = per_trial
        self.trials = trials
        self._points: deque[Point] = deque(maxlen=capacity)
        self._last: OrderedDict[str, tuple[int, int]] = OrderedDict()  # trial -> (last step, points kept)
        self.seq = 0  # the number of the newest point (0: none yet)

    def add(self, trial: str, step: int, metrics: Mapping[str, float]) -> Point | None:
        """Keep the point; None when it is ignored (not past the trial's last step, or the trial's quota is used)."""
        last = self._last.get(trial)
        if last is not None and (step <= last[0] or last[1] >= self.per_trial):
            return None
        self.seq += 1
        point = Point(self.seq, trial, step, dict(metrics))
        self._points.append(point)
        self._last[trial] = (step, (last[1] if last else 0) + 1)
        self._last.move_to_end(trial)
        while len(self._last) > self.trials:
            self._last.popitem(last=False)
        return point

    def since(self, after: int, limit: int = 1000) -> tuple[list[Point], bool]:
        """Points numbered above ``after`` (at most ``limit``), and whether some of them aged out already."""
        if not self._points or self._points[-1].seq <= after:
            return [], False
        dropped = self._points[0].seq > after + 1
        start = max(0, after + 1 - self._points[0].seq)
        out = [self._points[i] for i in range(start, min(len(self._points), start + limit))]
        return out, dropped

    def __len__(self) -> int:
        return len(self._points)

"""Small immutable views of the Kubernetes objects the operator watches.

The watch streams deliver whole objects; the operator keeps only these views in its in-memory indexes
(one per experiment), so a reconcile reads a few fields instead of walking nested dicts, and memory
stays small with thousands of trials. Each parser accepts the raw body as the API server sends it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from kubenas.core.records import TrialRecord
from kubenas.operator import names


def resource_version(body: Mapping[str, Any]) -> int:
    """The object's resourceVersion as a number, to tell which of two copies is newer.

    resourceVersion is formally opaque, but every API server backed by etcd issues increasing
    integers; an unparsable one counts as oldest so a fresh write always wins.
    """
    try:
        return int(body.get("metadata", {}).get("resourceVersion", "0"))
    except (TypeError, ValueError):
        return 0


def owner_uid(body: Mapping[str, Any]) -> str:
    """The uid of the object's controlling owner ("" if none)."""
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid", ""))
    return ""


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TrialView:
    """A Trial as the operator reads it: its spec, and the status the operator wrote."""

    name: str
    uid: str
    owner_uid: str
    resource_version: int
    index: int
    architecture: Mapping[str, Any]
    architecture_id: str
    seed: int
    phase: str = "Pending"
    reward: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    reason: str | None = None
    message: str | None = None
    attempts: int = 0
    start_time: str | None = None
    completion_time: str | None = None
    tell_sequence: int | None = None
    asks_before_tell: int | None = None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> TrialView:
        meta, spec = body.get("metadata", {}), body.get("spec", {})
        return cls(
            name=meta["name"],
            uid=meta.get("uid", ""),
            owner_uid=owner_uid(body),
            resource_version=resource_version(body),
            index=int(spec["index"]),
            architecture=dict(spec.get("architecture", {})),
            architecture_id=spec.get("architectureId", ""),
            seed=int(spec.get("seed", 0)),
            **_status_fields(body.get("status") or {}),
        )

    def with_status(self, status: Mapping[str, Any]) -> TrialView:
        """This trial as it will read once ``status`` (a whole status, as the operator writes it) is stored.

        A finished trial counts as finished from the moment its result is told, while the write that
        records it is still on its way: the next candidate can be asked meanwhile (it is created only
        once the write has landed).
        """
        return replace(self, **_status_fields(status))

    @cached_property
    def done(self) -> bool:
        """Finished (cached: every pass asks this of every trial of the history)."""
        return self.phase in ("Succeeded", "Failed", "Infeasible")

    @cached_property
    def _record(self) -> TrialRecord:
        return TrialRecord(
            index=self.index,
            architecture=dict(self.architecture),
            name=self.name,
            phase=self.phase,  # type: ignore[arg-type]
            reward=self.reward,
            metrics=dict(self.metrics),
            reason=self.reason,
            tell_sequence=self.tell_sequence,
            asks_before_tell=self.asks_before_tell,
        )

    def record(self) -> TrialRecord:
        """The trial as history, the form the engine and the controller's replay take (built once)."""
        return self._record


def _status_fields(status: Mapping[str, Any]) -> dict[str, Any]:
    reward = status.get("reward")
    return {
        "phase": status.get("phase") or "Pending",
        "reward": None if reward is None else float(reward),
        "metrics": {k: float(v) for k, v in (status.get("metrics") or {}).items()},
        "reason": status.get("reason"),
        "message": status.get("message"),
        "attempts": int(status.get("attempts") or 0),
        "start_time": status.get("startTime"),
        "completion_time": status.get("completionTime"),
        "tell_sequence": status.get("tellSequence"),
        "asks_before_tell": status.get("asksBeforeTell"),
    }


@dataclass(frozen=True)
class Termination:
    """How the trainer container ended."""

    exit_code: int
    reason: str | None
    message: str | None
    started_at: str | None
    finished_at: str | None

    def seconds(self) -> float:
        start, end = parse_time(self.started_at), parse_time(self.finished_at)
        if start is None or end is None:
            return 0.0
        return max(0.0, (end - start).total_seconds())


@dataclass(frozen=True)
class PodView:
    """A trainer pod: is it running, how did its trainer container end, was it disrupted."""

    name: str
    uid: str
    owner_uid: str
    resource_version: int
    trial: str
    created: str | None
    running_since: str | None = None
    terminated: Termination | None = None
    disrupted: bool = False
    deleting: bool = False

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> PodView:
        meta, status = body.get("metadata", {}), body.get("status") or {}
        running_since: str | None = None
        terminated: Termination | None = None
        for cs in status.get("containerStatuses") or []:
            if cs.get("name") != names.TRAINER_CONTAINER:
                continue
            state = cs.get("state") or {}
            if "running" in state:
                running_since = (state["running"] or {}).get("startedAt")
            elif "terminated" in state:
                t = state["terminated"] or {}
                terminated = Termination(
                    exit_code=int(t.get("exitCode", -1)),
                    reason=t.get("reason"),
                    message=t.get("message"),
                    started_at=t.get("startedAt"),
                    finished_at=t.get("finishedAt"),
                )
        disrupted = any(
            c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        return cls(
            name=meta["name"],
            uid=meta.get("uid", ""),
            owner_uid=owner_uid(body),
            resource_version=resource_version(body),
            trial=(meta.get("labels") or {}).get(names.LABEL_TRIAL, ""),
            created=meta.get("creationTimestamp"),
            running_since=running_since,
            terminated=terminated,
            disrupted=disrupted,
            deleting=bool(meta.get("deletionTimestamp")),
        )


@dataclass(frozen=True)
class JobView:
    """A trainer Job's verdict: finished or not, and why it failed."""

    name: str
    uid: str
    owner_uid: str
    resource_version: int
    trial: str
    complete: bool = False
    failed: bool = False
    reason: str | None = None
    message: str | None = None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> JobView:
        meta, status = body.get("metadata", {}), body.get("status") or {}
        complete = failed = False
        reason = message = None
        for c in status.get("conditions") or []:
            if c.get("status") != "True":
                continue
            if c.get("type") == "Complete":
                complete = True
            elif c.get("type") == "Failed":
                failed, reason, message = True, c.get("reason"), c.get("message")
        return cls(
            name=meta["name"],
            uid=meta.get("uid", ""),
            owner_uid=owner_uid(body),
            resource_version=resource_version(body),
            trial=(meta.get("labels") or {}).get(names.LABEL_TRIAL, meta["name"]),
            complete=complete,
            failed=failed,
            reason=reason,
            message=message,
        )


@dataclass(frozen=True)
class EndpointView:
    """Ready addresses of the controller Service, from one of its EndpointSlices."""

    name: str
    service: str
    addresses: tuple[str, ...]
    port: int | None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> EndpointView:
        meta = body.get("metadata", {})
        addresses: list[str] = []
        for ep in body.get("endpoints") or []:
            ready = (ep.get("conditions") or {}).get("ready")
            if ready is False:
                continue
            addresses.extend(ep.get("addresses") or [])
        port = next(
            (p.get("port") for p in body.get("ports") or [] if p.get("name") == names.CONTROLLER_PORT_NAME), None
        )
        return cls(
            name=meta["name"],
            service=(meta.get("labels") or {}).get("kubernetes.io/service-name", ""),
            addresses=tuple(sorted(addresses)),
            port=port,
        )


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity; the status stores such a reward as absent."""
    return value if value is not None and math.isfinite(value) else None

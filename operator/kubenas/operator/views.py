"""Small immutable views of the Kubernetes objects the operator watches.

The watch streams deliver whole objects; the operator keeps only these views in its in-memory indexes
(one per experiment), so a reconcile reads a few fields instead of walking nested dicts, and memory
stays small with thousands of trials. Each parser accepts the raw body as the API server sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubenas.core.codec import record_of
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
    """A Trial as the operator reads it: its identity, and its spec and status as the core's record.

    The record is read through :mod:`kubenas.core.codec`, the one codec of a Trial for every adapter.
    """

    name: str
    uid: str
    owner_uid: str
    resource_version: int
    architecture_id: str
    seed: int
    _record: TrialRecord

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> TrialView:
        meta, spec = body.get("metadata", {}), body.get("spec", {})
        return cls(
            name=meta["name"],
            uid=meta.get("uid", ""),
            owner_uid=owner_uid(body),
            resource_version=resource_version(body),
            architecture_id=spec.get("architectureId", ""),
            seed=int(spec.get("seed", 0)),
            _record=record_of(meta["name"], spec, body.get("status")),
        )

    @property
    def index(self) -> int:
        return self._record.index

    @property
    def phase(self) -> str:
        return self._record.phase

    @property
    def done(self) -> bool:
        return self._record.done

    def record(self) -> TrialRecord:
        """The trial as history, the form the driver and the controller's replay take."""
        return self._record


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


#: waiting reasons of a container on its way to start
STARTING = frozenset({"ContainerCreating", "PodInitializing"})


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
    #: a container (init containers first) waiting for a reason of its own, not a normal start:
    #: (container, reason, message), e.g. ("trainer", "CreateContainerConfigError", 'secret "x" not found')
    waiting: tuple[str, str, str] | None = None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> PodView:
        meta, status = body.get("metadata", {}), body.get("status") or {}
        waiting: tuple[str, str, str] | None = None
        for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            state = (cs.get("state") or {}).get("waiting") or {}
            reason = state.get("reason") or ""
            if reason and reason not in STARTING and waiting is None:
                waiting = (cs.get("name", ""), reason, state.get("message") or "")
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
            waiting=waiting,
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
    created: str | None = None
    #: suspended: queued in Kueue and not admitted yet, or preempted (Kueue suspends it again)
    suspended: bool = False
    #: in a Kueue LocalQueue: Kueue admits it, and may preempt it (suspend it again) at any time
    queued: bool = False

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
            created=meta.get("creationTimestamp"),
            suspended=bool((body.get("spec") or {}).get("suspend")),
            queued=names.KUEUE_QUEUE_LABEL in (meta.get("labels") or {}),
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

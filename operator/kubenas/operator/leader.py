"""Leader election on a ``coordination.k8s.io/v1`` Lease, the way client-go's leaderelection does it.

Replicas of the operator all run kopf (so every replica keeps a warm cache), but only the holder of
the Lease runs experiment reconcilers. The protocol:

- A candidate reads the Lease every ``retry_period_s``. It may take it when nobody holds it, when
  it holds it already, or when the holder has not renewed it for ``leaseDurationSeconds``, measured
  on the candidate's own clock from the moment it first saw the current version of the Lease (as
  client-go does: the replicas' clocks need not agree, only tick at the same rate).
- Taking and renewing are a PUT carrying the resourceVersion that was read: when two candidates
  race, the API server accepts one and answers the other 409 Conflict.
- The leader renews every ``retry_period_s``. If it has not renewed successfully for
  ``renew_deadline_s`` (shorter than the lease duration, so it gives up before anyone else may take
  over), it stops leading at once: it must never act after it could have lost the Lease.
- On a clean shutdown the leader releases the Lease (no holder, a 1 s duration, as client-go's
  ``ReleaseOnCancel``), so a standby takes over at its next retry instead of after the lease duration.

The decisions (may I take it, what do I write, has it expired) are pure functions of the Lease as
read, the time and the candidate's identity; :class:`LeaderElector` only does the I/O around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubenas.core.errors import KubenasError
from kubenas.operator.kube import AlreadyExists, ApiError, KubeApi, NotFound

log = logging.getLogger("kubenas.operator")

LEASE_API_VERSION = "coordination.k8s.io/v1"
DEFAULT_LEASE_NAME = "kubenas-operator"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
ENV_PREFIX = "KUBENAS_OPERATOR_LEADER_ELECTION_"
#: a released Lease: no holder and the shortest duration, so a standby's next retry takes it
RELEASED_DURATION_S = 1
#: the retry period is stretched by up to this fraction, so that candidates do not retry in step
JITTER = 0.2


class ElectionConfigError(KubenasError, ValueError):
    """The election timings cannot be safe (the leader must give up before anyone may take over)."""


def default_namespace(env: Mapping[str, str] | None = None, sa_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """Where the Lease lives: $POD_NAMESPACE (the chart's downward API), the pod's service account
    namespace, or ``default`` (an operator run outside a cluster)."""
    env = os.environ if env is None else env
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    with contextlib.suppress(OSError):
        namespace = sa_file.read_text().strip()
        if namespace:
            return namespace
    return "default"


def new_identity(env: Mapping[str, str] | None = None) -> str:
    """The pod's name (or the host's) and a random suffix: a restarted process is a new candidate,
    never mistaken for the holder it replaced."""
    env = os.environ if env is None else env
    base = env.get("POD_NAME") or socket.gethostname()
    return f"{base}_{secrets.token_hex(4)}"


@dataclass(frozen=True)
class ElectionConfig:
    """Where the Lease is and how fast the election moves (client-go's defaults)."""

    namespace: str = "default"
    name: str = DEFAULT_LEASE_NAME
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0
    identity: str = field(default_factory=new_identity)

    def __post_init__(self) -> None:
        if not self.lease_duration_s > self.renew_deadline_s:
            raise ElectionConfigError("the lease duration must be longer than the renew deadline")
        if not self.renew_deadline_s > self.retry_period_s * (1 + JITTER):
            raise ElectionConfigError(f"the renew deadline must be longer than {1 + JITTER} times the retry period")
        if self.retry_period_s <= 0:
            raise ElectionConfigError("the retry period must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ElectionConfig | None:
        """The election set by ``kubenas operator --leader-election``, or None (one replica)."""
        env = os.environ if env is None else env

        def get(name: str, default: str) -> str:
            return env.get(ENV_PREFIX + name) or default

        if get("ENABLED", "") != "true":
            return None
        return cls(
            namespace=get("NAMESPACE", "") or default_namespace(env),
            name=get("NAME", DEFAULT_LEASE_NAME),
            lease_duration_s=float(get("LEASE_DURATION", "15")),
            renew_deadline_s=float(get("RENEW_DEADLINE", "10")),
            retry_period_s=float(get("RETRY_PERIOD", "2")),
            identity=new_identity(env),
        )

    @staticmethod
    def disabled_env() -> dict[str, str]:
        """Said explicitly, so that a variable inherited from the environment cannot turn it on."""
        return {ENV_PREFIX + "ENABLED": "false"}

    def to_env(self) -> dict[str, str]:
        return {
            ENV_PREFIX + "ENABLED": "true",
            ENV_PREFIX + "NAMESPACE": self.namespace,
            ENV_PREFIX + "NAME": self.name,
            ENV_PREFIX + "LEASE_DURATION": str(self.lease_duration_s),
            ENV_PREFIX + "RENEW_DEADLINE": str(self.renew_deadline_s),
            ENV_PREFIX + "RETRY_PERIOD": str(self.retry_period_s),
        }


# -- the pure part ---------------------------------------------------------------------------------
def micro_time(at: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class LeaseRecord:
    """The election fields of a Lease's spec."""

    holder: str = ""
    duration_s: int = 0
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0

    @classmethod
    def parse(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration_s=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=parse_micro_time(spec.get("acquireTime")),
            renew_time=parse_micro_time(spec.get("renewTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"leaseDurationSeconds": self.duration_s, "leaseTransitions": self.transitions}
        if self.holder:
            out["holderIdentity"] = self.holder
        if self.acquire_time is not None:
            out["acquireTime"] = micro_time(self.acquire_time)
        if self.renew_time is not None:
            out["renewTime"] = micro_time(self.renew_time)
        return out


@dataclass(frozen=True)
class Observation:
    """A version of the Lease and when (this process's monotonic clock) it was first seen."""

    record: LeaseRecord
    version: str
    seen_at: float


def observe(previous: Observation | None, record: LeaseRecord, version: str, now: float) -> Observation:
    """The observation after reading ``version``: the expiry clock restarts only when the Lease changed."""
    if previous is not None and previous.version == version:
        return previous
    return Observation(record, version, now)


def expired(observation: Observation, now: float) -> bool:
    """Nobody holds the Lease, or its holder has not renewed it for its duration (on our clock)."""
    record = observation.record
    return not record.holder or now >= observation.seen_at + record.duration_s


def may_take(observation: Observation | None, identity: str, now: float) -> bool:
    """May ``identity`` write itself into the Lease now? (None: there is no Lease yet.)"""
    return observation is None or observation.record.holder == identity or expired(observation, now)


def claim(current: LeaseRecord | None, identity: str, at: datetime, duration_s: float) -> LeaseRecord:
    """What ``identity`` writes to take or renew the Lease: a renewal keeps the acquire time and the
    transition count; a takeover from anyone else (a released Lease included) counts a transition."""
    duration = max(1, round(duration_s))
    if current is not None and current.holder == identity:
        return replace(current, duration_s=duration, renew_time=at, acquire_time=current.acquire_time or at)
    transitions = 0 if current is None else current.transitions + 1
    return LeaseRecord(identity, duration, acquire_time=at, renew_time=at, transitions=transitions)


def release(current: LeaseRecord, at: datetime) -> LeaseRecord:
    """What a leader that stops writes: no holder and a 1 s duration, transitions kept."""
    return LeaseRecord("", RELEASED_DURATION_S, acquire_time=at, renew_time=at, transitions=current.transitions)


def retry_delay(period_s: float, rng: Callable[[], float] = random.random) -> float:
    return period_s * (1 + JITTER * rng())


# -- the I/O around it ----------------------------------------------------------------------------
Callback = Callable[[], Awaitable[None]]


class LeaderElector:
    """Campaigns for the Lease until stopped; calls ``on_lead`` on winning it and ``on_stand_by`` on
    losing it (both awaited before the elector goes on, so leading never overlaps a lost Lease)."""

    def __init__(
        self,
        api: KubeApi,
        config: ElectionConfig,
        *,
        on_lead: Callback,
        on_stand_by: Callback,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.config = config
        self.on_lead = on_lead
        self.on_stand_by = on_stand_by
        self.clock = clock
        self.wall = wall
        self.leading = False
        self.observed: Observation | None = None
        #: when the last successful take or renewal started (monotonic): the renew deadline counts from it
        self.renewed_at = -float("inf")
        self._task: asyncio.Task[None] | None = None
        self._seen_holder: str | None = None

    @property
    def identity(self) -> str:
        return self.config.identity

    def _extra(self, **more: Any) -> dict[str, Any]:
        lease = f"{self.config.namespace}/{self.config.name}"
        return {"lease": lease, "identity": self.identity, **more}

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._campaign(), name="leader election")

    async def stop(self) -> None:
        """Stop campaigning; a leader stops its work first, then releases the Lease."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.leading:
            await self._step_down("shutdown")
            try:
                async with asyncio.timeout(self.config.renew_deadline_s):
                    await self._release()
            except Exception as exc:  # the standbys take over when the Lease expires instead
                log.warning("lease not released", extra=self._extra(error=repr(exc)))

    async def _campaign(self) -> None:
        # Timeouts use asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for drops a cancel
        # that arrives just as the awaited call finishes, and the elector would then outlive stop().
        while True:
            try:
                async with asyncio.timeout(self.config.renew_deadline_s):
                    acquired = await self.try_acquire_or_renew()
            except Exception as exc:  # the API server is away or the Lease unreadable: try again later
                log.warning("lease not readable", extra=self._extra(error=repr(exc)))
                acquired = False
            if acquired:
                self.leading = True
                log.info("became leader", extra=self._extra(holder=self.identity))
                await self.on_lead()
                await self._keep()
            await asyncio.sleep(retry_delay(self.config.retry_period_s))

    async def _keep(self) -> None:
        """Renew every retry period; stop leading when another candidate holds the Lease or when no
        renewal has succeeded for the renew deadline (counted from the start of the last good one)."""
        while True:
            deadline = self.renewed_at + self.config.renew_deadline_s
            await asyncio.sleep(min(self.config.retry_period_s, max(0.0, deadline - self.clock())))
            left = deadline - self.clock()
            if left <= 0:
                await self._step_down("renew deadline passed")
                return
            try:
                async with asyncio.timeout(left):
                    renewed = await self.try_acquire_or_renew()
                if renewed:
                    continue
            except Exception as exc:
                log.warning("lease renewal failed", extra=self._extra(error=repr(exc)))
                continue
            if self.observed is not None and self.observed.record.holder not in ("", self.identity):
                await self._step_down("taken by another candidate")
                return

    async def _step_down(self, reason: str) -> None:
        self.leading = False
        holder = self.observed.record.holder if self.observed is not None else ""
        level = logging.INFO if reason == "shutdown" else logging.WARNING
        log.log(level, "lost leadership", extra=self._extra(reason=reason, holder=holder))
        await self.on_stand_by()

    async def try_acquire_or_renew(self) -> bool:
        """One round: read the Lease, and take or renew it if :func:`may_take` says so."""
        cfg = self.config
        started = self.clock()
        try:
            lease = await self.api.get(LEASE_API_VERSION, "Lease", cfg.namespace, cfg.name)
        except NotFound:
            record = claim(None, self.identity, self.wall(), cfg.lease_duration_s)
            try:
                created = await self.api.create(self._lease(record, None))
            except AlreadyExists:  # another candidate created it first
                return False
            self.observed = observe(None, record, created["metadata"]["resourceVersion"], self.clock())
            self.renewed_at = started
            return True
        current = LeaseRecord.parse(lease)
        self.observed = observe(self.observed, current, lease["metadata"]["resourceVersion"], self.clock())
        if not may_take(self.observed, self.identity, self.clock()):
            self._standing_by(current.holder)
            return False
        record = claim(current, self.identity, self.wall(), cfg.lease_duration_s)
        try:
            written = await self.api.replace(self._lease(record, lease["metadata"]["resourceVersion"]))
        except ApiError as exc:
            if exc.status == 409:  # someone else wrote it since we read it
                return False
            raise
        self.observed = observe(self.observed, record, written["metadata"]["resourceVersion"], self.clock())
        self.renewed_at = started
        return True

    def _standing_by(self, holder: str) -> None:
        if holder != self._seen_holder:
            self._seen_holder = holder
            log.info("standing by", extra=self._extra(holder=holder))

    async def _release(self) -> None:
        cfg = self.config
        lease = await self.api.get(LEASE_API_VERSION, "Lease", cfg.namespace, cfg.name)
        current = LeaseRecord.parse(lease)
        if current.holder != self.identity:
            return
        await self.api.replace(self._lease(release(current, self.wall()), lease["metadata"]["resourceVersion"]))
        log.info("lease released", extra=self._extra(holder=""))

    def _lease(self, record: LeaseRecord, version: str | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.config.name, "namespace": self.config.namespace}
        if version is not None:
            metadata["resourceVersion"] = version
        return {"apiVersion": LEASE_API_VERSION, "kind": "Lease", "metadata": metadata, "spec": record.spec()}

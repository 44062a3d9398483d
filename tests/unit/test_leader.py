"""Leader election on a Lease: the pure decisions, then the elector against an in-memory API server
that answers like the real one (resourceVersion checks, 409 Conflict, AlreadyExists)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kubenas.operator.kube import AlreadyExists, ApiError, Conflict, NotFound
from kubenas.operator.leader import (
    ElectionConfig,
    ElectionConfigError,
    LeaderElector,
    LeaseRecord,
    claim,
    default_namespace,
    expired,
    may_take,
    micro_time,
    new_identity,
    observe,
    parse_micro_time,
    release,
)
from kubenas.operator.metrics import OperatorMetrics
from kubenas.operator.runtime import OperatorConfig, Runtime

T0 = datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def held(holder: str, duration: int = 15, transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder, duration, acquire_time=T0, renew_time=T0, transitions=transitions)


# -- the pure part ---------------------------------------------------------------------------------
def test_no_lease_or_a_free_one_may_be_taken() -> None:
    assert may_take(None, "me", now=0.0)
    free = observe(None, LeaseRecord(), "7", now=100.0)
    assert expired(free, now=100.0) and may_take(free, "me", now=100.0)
    first = claim(None, "me", T0, 15)
    assert first == LeaseRecord("me", 15, acquire_time=T0, renew_time=T0, transitions=0)


def test_a_fresh_lease_of_another_holder_may_not_be_taken() -> None:
    seen = observe(None, held("other"), "7", now=100.0)
    assert not expired(seen, now=114.9)
    assert not may_take(seen, "me", now=114.9)


def test_a_held_lease_expires_a_duration_after_its_version_was_first_seen() -> None:
    seen = observe(None, held("other"), "7", now=100.0)
    assert observe(seen, held("other"), "7", now=110.0) is seen  # same version: the clock keeps running
    assert may_take(seen, "me", now=115.0)
    renewed = observe(seen, held("other"), "8", now=110.0)  # a renewal restarts it
    assert renewed.seen_at == 110.0
    assert not may_take(renewed, "me", now=115.0) and may_take(renewed, "me", now=125.0)


def test_the_holder_renews_its_own_lease_keeping_acquire_time_and_transitions() -> None:
    mine = held("me", transitions=3)
    seen = observe(None, mine, "7", now=100.0)
    assert may_take(seen, "me", now=100.5)
    later = T0 + timedelta(seconds=2)
    assert claim(mine, "me", later, 15) == LeaseRecord("me", 15, acquire_time=T0, renew_time=later, transitions=3)


def test_a_takeover_counts_a_transition() -> None:
    later = T0 + timedelta(seconds=20)
    taken = claim(held("other", transitions=2), "me", later, 15)
    assert taken == LeaseRecord("me", 15, acquire_time=later, renew_time=later, transitions=3)
    after_release = claim(release(taken, later), "next", later, 15)
    assert after_release.holder == "next" and after_release.transitions == 4


def test_release_frees_the_lease_at_once() -> None:
    later = T0 + timedelta(seconds=5)
    released = release(held("me", transitions=2), later)
    assert released.holder == "" and released.duration_s == 1 and released.transitions == 2
    seen = observe(None, released, "9", now=100.0)
    assert may_take(seen, "standby", now=100.0)
    assert "holderIdentity" not in released.spec()


def test_lease_spec_round_trips_with_micro_time() -> None:
    record = held("me", transitions=1)
    spec = record.spec()
    assert spec["renewTime"] == "2025-01-01T12:00:00.123456Z" == micro_time(T0)
    assert spec == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 15,
        "acquireTime": "2025-01-01T12:00:00.123456Z",
        "renewTime": "2025-01-01T12:00:00.123456Z",
        "leaseTransitions": 1,
    }
    assert LeaseRecord.parse({"spec": spec}) == record
    assert parse_micro_time("2025-01-01T12:00:00.123456Z") == T0
    assert LeaseRecord.parse({}) == LeaseRecord()


def test_identity_namespace_and_timings(tmp_path: Path) -> None:
    a, b = new_identity({"POD_NAME": "kubenas-7d9-x"}), new_identity({"POD_NAME": "kubenas-7d9-x"})
    assert a.startswith("kubenas-7d9-x_") and a != b
    sa = tmp_path / "namespace"
    assert default_namespace({"POD_NAMESPACE": "ops"}, sa) == "ops"
    assert default_namespace({}, sa) == "default"
    sa.write_text("kubenas-system\n")
    assert default_namespace({}, sa) == "kubenas-system"
    with pytest.raises(ElectionConfigError, match="renew deadline"):
        ElectionConfig(lease_duration_s=10, renew_deadline_s=10)
    with pytest.raises(ElectionConfigError, match="retry period"):
        ElectionConfig(renew_deadline_s=2, retry_period_s=2)


def test_election_travels_through_the_environment() -> None:
    config = OperatorConfig(election=ElectionConfig(namespace="ops", name="lease", identity="x"))
    back = OperatorConfig.from_env(config.to_env())
    assert back.election is not None
    assert (back.election.namespace, back.election.name, back.election.lease_duration_s) == ("ops", "lease", 15.0)
    assert OperatorConfig.from_env({}).election is None


# -- the elector -----------------------------------------------------------------------------------
class LeaseServer:
    """One namespace of Leases, with the API server's optimistic concurrency."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.down = False
        #: called as each replace is stored, before the caller sees its answer
        self.on_replace: Any = None

    def api(self) -> FakeApi:
        return FakeApi(self)

    def _stored(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        out = copy.deepcopy(dict(obj))
        out["metadata"]["resourceVersion"] = str(self.version)
        self.leases[out["metadata"]["name"]] = out
        return copy.deepcopy(out)

    def holder(self, name: str = "lease") -> str:
        return str(self.leases.get(name, {}).get("spec", {}).get("holderIdentity", ""))


class FakeApi:
    def __init__(self, server: LeaseServer) -> None:
        self.server = server

    def _check(self) -> None:
        if self.server.down:
            raise ApiError(0, "Unreachable", "connection refused")

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self._check()
        if name not in self.server.leases:
            raise NotFound(404, "NotFound", name)
        return copy.deepcopy(self.server.leases[name])

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        if obj["metadata"]["name"] in self.server.leases:
            raise AlreadyExists(409, "AlreadyExists", obj["metadata"]["name"])
        return self.server._stored(obj)

    async def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        current = self.server.leases[obj["metadata"]["name"]]
        if obj["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "the object has been modified")
        stored = self.server._stored(obj)
        if self.server.on_replace is not None:
            self.server.on_replace()
        return stored


FAST = {"lease_duration_s": 1.0, "renew_deadline_s": 0.5, "retry_period_s": 0.05}


class Candidate:
    """An elector with a record of what it was told: lead / stand by."""

    def __init__(self, server: LeaseServer, name: str) -> None:
        self.calls: list[str] = []
        config = ElectionConfig(namespace="ns", name="lease", identity=name, **FAST)

        async def lead() -> None:
            self.calls.append("lead")

        async def stand_by() -> None:
            self.calls.append("stand by")

        self.elector = LeaderElector(server.api(), config, on_lead=lead, on_stand_by=stand_by)  # type: ignore[arg-type]


async def leader(server: LeaseServer, name: str) -> Candidate:
    """A candidate started alone, once it leads."""
    candidate = Candidate(server, name)
    candidate.elector.start()
    await until(lambda: candidate.elector.leading)
    return candidate


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_one_of_two_candidates_leads_and_a_clean_stop_hands_over_at_once() -> None:
    async def main() -> None:
        server = LeaseServer()
        a = await leader(server, "a")
        b = Candidate(server, "b")
        b.elector.start()
        await asyncio.sleep(0.3)
        assert server.holder() == "a" and not b.elector.leading and b.calls == []
        await a.elector.stop()
        assert a.calls == ["lead", "stand by"]
        assert server.holder() in ("", "b")
        started = asyncio.get_running_loop().time()
        await until(lambda: b.elector.leading)
        assert asyncio.get_running_loop().time() - started < 0.5  # not the lease duration (1 s)
        assert server.holder() == "b" and server.leases["lease"]["spec"]["leaseTransitions"] == 1
        await b.elector.stop()

    asyncio.run(main())


def test_a_stop_that_arrives_as_a_renewal_lands_still_stops_the_elector() -> None:
    """The cancel comes while the renewal's answer is on its way back: the elector must not swallow it
    and keep renewing (asyncio.wait_for on Python 3.11 did, and stop() then waited forever)."""

    async def main() -> None:
        server = LeaseServer()
        a = await leader(server, "a")
        task = a.elector._task
        assert task is not None
        server.on_replace = task.cancel
        await until(task.done, timeout=2)
        assert task.cancelled()
        server.on_replace = None
        await a.elector.stop()
        assert server.holder() == ""  # released on the way out

    asyncio.run(main())


def test_a_dead_leader_is_replaced_after_the_lease_duration() -> None:
    async def main() -> None:
        server = LeaseServer()
        a = await leader(server, "a")
        b = Candidate(server, "b")
        b.elector.start()
        await asyncio.sleep(0.2)
        assert a.elector._task is not None
        a.elector._task.cancel()  # dies without releasing
        died = asyncio.get_running_loop().time()
        await until(lambda: b.elector.leading, timeout=5)
        waited = asyncio.get_running_loop().time() - died
        assert 0.8 <= waited <= 2.5, waited  # the lease duration, not the renew deadline or never
        assert server.holder() == "b"
        await b.elector.stop()

    asyncio.run(main())


def test_a_leader_that_cannot_renew_stops_before_the_lease_expires() -> None:
    async def main() -> None:
        server = LeaseServer()
        a = await leader(server, "a")
        server.down = True
        cut = asyncio.get_running_loop().time()
        await until(lambda: not a.elector.leading)
        assert asyncio.get_running_loop().time() - cut < 1.0  # within the renew deadline, before expiry
        assert a.calls == ["lead", "stand by"]
        server.down = False
        await until(lambda: a.elector.leading)  # its own Lease: taken back at once
        await a.elector.stop()

    asyncio.run(main())


def test_a_leader_whose_lease_was_taken_stands_by_at_its_next_renewal() -> None:
    async def main() -> None:
        server = LeaseServer()
        a = await leader(server, "a")
        lease = server.leases["lease"]
        server._stored({**lease, "spec": {**lease["spec"], "holderIdentity": "intruder"}})
        await until(lambda: not a.elector.leading, timeout=1)
        await a.elector.stop()
        assert server.holder() == "intruder"  # never released: it is not ours

    asyncio.run(main())


# -- the runtime -----------------------------------------------------------------------------------
class FakeReconciler:
    def __init__(self, runtime: Runtime, body: Mapping[str, Any]) -> None:
        self.uid = body["metadata"]["uid"]
        self.wakes = 0
        self.running = False

    def start(self) -> None:
        self.running = True
        self.wakes += 1

    def wake(self) -> None:
        self.wakes += 1

    def observe_experiment(self, body: Mapping[str, Any]) -> None:
        pass

    def note_termination(self, pod_uid: str) -> None:
        pass

    async def stop(self) -> None:
        self.running = False


def experiment(name: str, uid: str = "u1", generation: int = 1, version: int = 1) -> dict[str, Any]:
    meta = {"namespace": "ns", "name": name, "uid": uid, "generation": generation, "resourceVersion": str(version)}
    return {"metadata": meta, "spec": {}}


def test_the_runtime_runs_reconcilers_only_while_leading() -> None:
    async def main() -> None:
        metrics = OperatorMetrics()
        config = OperatorConfig(metrics_port=None, election=ElectionConfig(identity="me"))
        runtime = Runtime(config, None, metrics, FakeReconciler)  # type: ignore[arg-type]
        assert not runtime.leading and metrics.leader._value.get() == 0
        assert runtime.observe(experiment("a"), {}) is None  # standby: remembered only
        assert runtime.reconcilers == {}
        await runtime.lead()
        assert metrics.leader._value.get() == 1
        first = runtime.reconcilers[("ns", "a")]
        assert first.running  # type: ignore[attr-defined]
        wakes = first.wakes  # type: ignore[attr-defined]
        runtime.observe(experiment("a", version=2), {})  # a status write: no wake
        runtime.observe(experiment("a", generation=2, version=3), {})  # a spec edit: wake
        assert first.wakes == wakes + 1  # type: ignore[attr-defined]
        await runtime.stand_by()
        assert runtime.reconcilers == {} and not first.running  # type: ignore[attr-defined]
        assert metrics.leader._value.get() == 0
        runtime.observe(experiment("b"), {})
        await runtime.lead()
        assert set(runtime.reconcilers) == {("ns", "a"), ("ns", "b")}
        await runtime.forget(experiment("b", uid="older"))  # not the known one: ignored
        await runtime.forget(experiment("b"))
        assert set(runtime.reconcilers) == {("ns", "a")} and ("ns", "b") not in runtime.experiments

    asyncio.run(main())

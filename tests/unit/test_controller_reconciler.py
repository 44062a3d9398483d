"""The operator's reconcile pass against an in-memory API server and a real controller service.

The fake API keeps objects with resourceVersions and merge-patch semantics; a tiny "job controller"
in the test turns Jobs into pods and finishes them. The controller is the real aiohttp service. The
real cluster tests cover the same ground end to end; these run in a second and pin the logic down.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from kubenas.api.v1alpha1 import API_VERSION, SearchExperimentSpec
from kubenas.controller import paths
from kubenas.controller.server import make_app
from kubenas.core.oneshot import supernet_seed
from kubenas.core.search import Search
from kubenas.operator import names, oneshot
from kubenas.operator.kube import AlreadyExists, ApiError, Invalid, NotFound
from kubenas.operator.metrics import OperatorMetrics
from kubenas.operator.reconciler import ExperimentReconciler
from kubenas.operator.runtime import Indexes, OperatorConfig, Runtime
from kubenas.operator.views import EndpointView, JobView, PodView, TrialView

from .test_controller_service import SPEC, reward

NS = "ns"
Key = tuple[str, str, str, str]


def merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(target.get(k), dict):
            merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


class FakeApi:
    """Just enough of the API server: create, get, list, merge patch, delete, events; counts writes."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.rv = itertools.count(1)
        self.uid = itertools.count(1)
        self.writes = 0
        self.events: list[tuple[str, str]] = []
        self.latency = 0.0  # seconds each create takes (writes in flight while passes run)

    def _key(self, api_version: str, kind: str, ns: str, name: str) -> Key:
        return (api_version, kind, ns, name)

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.writes += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        meta = obj["metadata"]
        key = self._key(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if key in self.objects:
            raise AlreadyExists(409, "AlreadyExists", meta["name"])
        body = copy.deepcopy(dict(obj))
        if "stringData" in body:
            import base64

            body["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in body.pop("stringData").items()}
        body["metadata"].update(
            uid=f"uid-{next(self.uid)}",
            resourceVersion=str(next(self.rv)),
            generation=1,
            creationTimestamp=f"2025-01-01T00:00:{len(self.objects) % 60:02d}Z",
        )
        self.objects[key] = body
        return copy.deepcopy(body)

    async def get(self, api_version: str, kind: str, ns: str, name: str) -> dict[str, Any]:
        try:
            return copy.deepcopy(self.objects[self._key(api_version, kind, ns, name)])
        except KeyError:
            raise NotFound(404, "NotFound", name) from None

    async def list(
        self,
        api_version: str,
        kind: str,
        ns: str,
        selector: Mapping[str, str] | None = None,
        field_selector: Mapping[str, str] | None = None,
    ) -> list:
        def field(o: Mapping[str, Any], path: str) -> Any:
            for part in path.split("."):
                o = o.get(part) or {}
            return o

        return [
            copy.deepcopy(o)
            for (av, k, n, _), o in self.objects.items()
            if (av, k, n) == (api_version, kind, ns)
            and all(o["metadata"].get("labels", {}).get(a) == b for a, b in (selector or {}).items())
            and all(field(o, a) == b for a, b in (field_selector or {}).items())
        ]

    async def patch(
        self, api_version: str, kind: str, ns: str, name: str, patch: Mapping[str, Any], subresource: str | None = None
    ) -> dict[str, Any]:
        self.writes += 1
        key = self._key(api_version, kind, ns, name)
        if key not in self.objects:
            raise NotFound(404, "NotFound", name)
        body = self.objects[key]
        if "stringData" in patch:
            import base64

            patch = {"data": {k: base64.b64encode(v.encode()).decode() for k, v in patch["stringData"].items()}}
        merge(body, patch)
        body["metadata"]["resourceVersion"] = str(next(self.rv))
        return copy.deepcopy(body)

    async def delete(self, api_version: str, kind: str, ns: str, name: str, propagation: str = "Background") -> None:
        self.writes += 1
        self.objects.pop(self._key(api_version, kind, ns, name), None)

    async def event(
        self, involved: Mapping[str, Any], reason: str, message: str, type_: str = "Normal", **_: Any
    ) -> None:
        self.writes += 1
        self.events.append((reason, message))

    async def close(self) -> None:
        pass

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for (_, k, _, _), o in sorted(self.objects.items()) if k == kind]


class Lookup:
    def __init__(self, fn: Callable[[], dict[Any, list[Any]]]) -> None:
        self.fn = fn

    def get(self, key: Any, default: Any = ()) -> Any:
        return self.fn().get(key, default)


def fake_indexes(api: FakeApi, endpoint: list[EndpointView]) -> Indexes:
    def group(kind: str, label: str, parse: Callable[[dict[str, Any]], Any]) -> Callable[[], dict[Any, list[Any]]]:
        def build() -> dict[Any, list[Any]]:
            out: dict[Any, list[Any]] = {}
            for o in api.of_kind(kind):
                out.setdefault((NS, o["metadata"]["labels"][label]), []).append(parse(o))
            return out

        return build

    return Indexes(
        trials=Lookup(group("Trial", names.LABEL_EXPERIMENT, TrialView.parse)),
        jobs=Lookup(group("Job", names.LABEL_TRIAL, JobView.parse)),
        pods=Lookup(group("Pod", names.LABEL_TRIAL, PodView.parse)),
        endpoints=Lookup(lambda: {(NS, "exp"): endpoint}),
    )


def experiment(budget: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "SearchExperiment",
        "metadata": {"name": "exp", "namespace": NS, "uid": "uid-exp", "generation": 1, "resourceVersion": "0"},
        "spec": {**SPEC, "budget": dict(budget)},
    }


class World:
    """The fake API, the controller behind a real HTTP server, and the "job controller"."""

    def __init__(self, api: FakeApi, budget: Mapping[str, Any]) -> None:
        self.api = api
        self.budget = budget
        self.endpoint: list[EndpointView] = []
        self.servers: list[TestServer] = []
        self.runtimes: list[Runtime] = []
        self.pod_serial = itertools.count()

    def reconciler(self) -> ExperimentReconciler:
        runtime = Runtime(OperatorConfig(metrics_port=None, status_interval_s=0.0), self.api, OperatorMetrics())
        runtime.indexes = fake_indexes(self.api, self.endpoint)
        self.runtimes.append(runtime)
        body = self.api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]
        return ExperimentReconciler(runtime, body)

    async def controller_up(self) -> None:
        """Start a controller process (a new one each call, as a replaced pod) with the Secret's token."""
        import base64

        secret = await self.api.get("v1", "Secret", NS, "exp-controller")
        token = base64.b64decode(secret["data"][names.TOKEN_KEY]).decode()
        server = TestServer(make_app(token, "exp"), host="127.0.0.1")
        await server.start_server()
        self.servers.append(server)
        self.endpoint[:] = [EndpointView("exp-controller-x", "exp-controller", ("127.0.0.1",), server.port)]

    async def close(self) -> None:
        for server in self.servers:
            await server.close()
        for runtime in self.runtimes:
            await runtime.close()

    async def run_pods(
        self, fail: Callable[[dict[str, Any]], int | None] = lambda arch: None, most: int | None = None
    ) -> int:
        """Give every Job without a pod (at most ``most``) a pod that finishes; returns how many ran."""
        ran = 0
        for job in self.api.of_kind("Job"):
            if most is not None and ran >= most:
                break
            if job["spec"].get("suspend"):
                continue  # as the real job controller: no pod while Kueue holds the Job
            trial = job["metadata"]["labels"][names.LABEL_TRIAL]
            if any(p["metadata"]["labels"][names.LABEL_TRIAL] == trial for p in self.api.of_kind("Pod")):
                continue
            env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
            arch = json.loads(env["KUBENAS_ARCHITECTURE"])
            code = fail(arch)
            message = json.dumps({"val_accuracy": reward(arch)}) if code is None else None
            await self.api.create(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{trial}-{next(self.pod_serial)}",
                        "namespace": NS,
                        "labels": job["spec"]["template"]["metadata"]["labels"],
                        "ownerReferences": [{"uid": job["metadata"]["uid"], "controller": True}],
                    },
                    "status": {
                        "containerStatuses": [
                            {
                                "name": "trainer",
                                "state": {
                                    "terminated": {
                                        "exitCode": code or 0,
                                        "message": message,
                                        "startedAt": "2025-01-01T00:00:00Z",
                                        "finishedAt": "2025-01-01T00:00:05Z",
                                    }
                                },
                            }
                        ]
                    },
                }
            )
            self.api.writes -= 1  # the kubelet's write, not the operator's
            ran += 1
        return ran


def scenario(budget: Mapping[str, Any], body: Callable[[World], Awaitable[None]]) -> None:
    async def main() -> None:
        api = FakeApi()
        await api.create(experiment(budget))
        api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]["metadata"]["uid"] = "uid-exp"
        api.writes = 0
        world = World(api, budget)
        try:
            await body(world)
        finally:
            await world.close()

    asyncio.run(main())


async def step(rec: ExperimentReconciler) -> None:
    """One reconcile pass and the writes it started, and again while results were stored meanwhile:
    a stored result wakes the reconciler, whose next pass releases what was asked after it."""
    while True:
        await rec.reconcile()
        await rec.writes.done()
        if not rec.writes.stored:
            return


async def started(world: World) -> ExperimentReconciler:
    """A reconciler whose first pass created the controller's objects, and the controller running."""
    rec = world.reconciler()
    await step(rec)
    await world.controller_up()
    return rec


async def settle(rec: ExperimentReconciler) -> None:
    for _ in range(50):
        await asyncio.sleep(0.01)
        if rec.status_writer.idle:
            return


def exp_status(world: World) -> dict[str, Any]:
    return world.api.objects[(API_VERSION, "SearchExperiment", NS, "exp")].get("status") or {}


def exp_status_spec(world: World) -> dict[str, Any]:
    return world.api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]["spec"]


def trials(world: World) -> list[dict[str, Any]]:
    return world.api.of_kind("Trial")


async def drive(world: World, rec: ExperimentReconciler, passes: int = 100, **kw: Any) -> None:
    for _ in range(passes):
        await step(rec)
        await settle(rec)
        if rec.final is not None:
            return
        await world.run_pods(**kw)


def test_waits_for_the_controller_then_runs_the_search_to_the_end() -> None:
    budget = {"maxTrials": 8, "parallelTrials": 3}

    async def body(world: World) -> None:
        rec = world.reconciler()
        await step(rec)
        await settle(rec)
        assert trials(world) == []  # no controller yet: nothing asked
        kinds = {k for (_, k, _, _) in world.api.objects}
        assert {"Secret", "Service", "Deployment"} <= kinds
        assert exp_status(world)["phase"] == "Pending"
        await world.controller_up()
        await step(rec)
        assert [t["metadata"]["name"] for t in trials(world)] == ["exp-00000", "exp-00001", "exp-00002"]
        assert len(world.api.of_kind("Job")) == 3
        await drive(world, rec)
        st = exp_status(world)
        assert st["phase"] == "Succeeded"
        assert st["trials"]["succeeded"] == 8 and st["trials"]["total"] == 8
        best = max(trials(world), key=lambda t: t["status"]["reward"])
        assert st["bestTrial"]["name"] == best["metadata"]["name"]
        assert sorted(t["status"]["tellSequence"] for t in trials(world)) == list(range(8))
        reasons = [r for r, _ in world.api.events]
        assert "MaxTrialsReached" in reasons and "NewBestTrial" in reasons
        deployment = world.api.objects[("apps/v1", "Deployment", NS, "exp-controller")]
        assert deployment["spec"]["replicas"] == 0  # the controller is stopped once the search is over
        assert world.api.writes / 8 <= 6

    scenario(budget, body)


def test_a_restarted_operator_rebuilds_from_the_trials_and_doubles_nothing() -> None:
    budget = {"maxTrials": 9, "parallelTrials": 3}

    async def body(world: World) -> None:
        first = world.reconciler()
        await step(first)
        await world.controller_up()
        await step(first)
        await world.run_pods()
        await first.reconcile()  # tells three and asks three; their Trials wait for the results' writes
        await first.writes.done()
        assert first.driver is not None
        asked = {i: first.driver.trial(i).architecture for i in range(6)}
        await settle(first)
        await first.status_writer.close()
        assert len(trials(world)) == 3
        second = world.reconciler()  # a new process: nothing in memory
        await step(second)
        made = {t["spec"]["index"]: t["spec"]["architecture"] for t in trials(world)}
        assert made == asked  # the same candidates, asked again of the replayed controller, nothing doubled
        await drive(world, second)
        assert exp_status(world)["trials"]["total"] == 9
        assert sorted(t["status"]["tellSequence"] for t in trials(world)) == list(range(9))

    scenario(budget, body)


def test_a_restarted_controller_gets_the_history_and_suggests_the_same() -> None:
    budget = {"maxTrials": 16, "parallelTrials": 2}

    async def body(world: World) -> None:
        rec = await started(world)
        for _ in range(5):
            await step(rec)
            await world.run_pods()
        # the controller pod is replaced: a new process with an empty memory at a new address
        await world.controller_up()
        await drive(world, rec)
        assert exp_status(world)["phase"] == "Succeeded"
        assert "ControllerReplayed" in [r for r, _ in world.api.events]
        # the whole history replays into a fresh search: every suggestion is the unbroken run's
        from kubenas.api.v1alpha1 import SearchExperimentSpec

        records = [TrialView.parse(t).record() for t in trials(world)]
        Search(SearchExperimentSpec.model_validate({**SPEC, "budget": budget}), records)

    scenario(budget, body)


def test_bad_candidates_count_as_failures_and_too_many_fail_the_experiment() -> None:
    budget = {"maxTrials": 12, "parallelTrials": 2, "maxFailedTrials": 2}

    async def body(world: World) -> None:
        rec = await started(world)
        await drive(world, rec, fail=lambda arch: 3)
        st = exp_status(world)
        assert st["phase"] == "Failed"
        failed = {c["type"]: c for c in st["conditions"]}["Failed"]
        assert failed["reason"] == "TooManyFailures"
        assert all(t["status"]["phase"] == "Failed" for t in trials(world))
        assert {t["status"]["reason"] for t in trials(world)} <= {"BadCandidate", "Cancelled"}

    scenario(budget, body)


def test_raising_max_trials_takes_effect_and_other_edits_are_refused() -> None:
    budget = {"maxTrials": 3, "parallelTrials": 3}

    async def body(world: World) -> None:
        rec = await started(world)
        await step(rec)
        exp = world.api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]
        exp["spec"] = {
            **exp["spec"],
            "budget": {"maxTrials": 5, "parallelTrials": 5},
            "strategy": {**exp["spec"]["strategy"], "seed": 99},
        }
        exp["metadata"]["generation"] = 2
        rec.observe_experiment(exp)
        await step(rec)
        await settle(rec)
        assert len(trials(world)) == 3  # the whole edit was refused
        spec_ok = {c["type"]: c for c in exp_status(world)["conditions"]}["SpecAccepted"]
        assert spec_ok["status"] == "False" and "spec.strategy.seed" in spec_ok["message"]
        exp["spec"] = {**exp["spec"], "strategy": SPEC["strategy"]}
        exp["metadata"]["generation"] = 3
        rec.observe_experiment(exp)
        await step(rec)
        assert len(trials(world)) == 5
        secret = world.api.objects[("v1", "Secret", NS, "exp-controller")]
        assert "data" in secret

    scenario(budget, body)


def test_a_refusal_already_in_status_is_not_warned_again_by_a_new_operator() -> None:
    budget = {"maxTrials": 3, "parallelTrials": 3}

    async def body(world: World) -> None:
        rec = await started(world)
        await step(rec)
        exp = world.api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]
        exp["spec"] = {**exp["spec"], "strategy": {**exp["spec"]["strategy"], "seed": 99}}
        exp["metadata"]["generation"] = 2
        rec.observe_experiment(exp)
        await step(rec)
        await settle(rec)
        await asyncio.sleep(0.05)  # the event is written in the background
        refusals = [r for r, _ in world.api.events if r == "SpecChangeRefused"]
        assert len(refusals) == 1
        again = world.reconciler()  # a restarted operator reads the status the first one wrote
        again.observe_experiment(exp)
        await step(again)
        await settle(again)
        await asyncio.sleep(0.05)
        assert [r for r, _ in world.api.events if r == "SpecChangeRefused"] == refusals

    scenario(budget, body)


def test_trials_being_created_count_as_active_so_nothing_is_asked_twice() -> None:
    budget = {"maxTrials": 6, "parallelTrials": 3}

    async def body(world: World) -> None:
        rec = await started(world)
        world.api.latency = 0.05
        await rec.reconcile()  # asks three; their Trials and Jobs are still being written
        assert len(rec.writes.creating) == 3
        await rec.reconcile()  # sees three active placeholders: asks nothing
        await rec.reconcile()
        await rec.writes.done()
        assert [t["metadata"]["name"] for t in trials(world)] == ["exp-00000", "exp-00001", "exp-00002"]
        assert len(world.api.of_kind("Job")) == 3
        world.api.latency = 0.0
        await drive(world, rec)
        assert exp_status(world)["trials"]["total"] == 6

    scenario(budget, body)


def test_a_goal_reached_cancels_the_trials_still_running() -> None:
    budget = {"maxTrials": 20, "parallelTrials": 3}

    async def body(world: World) -> None:
        exp = world.api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]
        exp["spec"]["objective"] = {"metric": "val_accuracy", "target": 0.0}  # the first result reaches it
        rec = await started(world)
        await step(rec)
        await world.run_pods(most=1)
        await step(rec)
        await settle(rec)
        st = exp_status(world)
        assert st["phase"] == "Succeeded"
        assert {c["type"]: c for c in st["conditions"]}["Succeeded"]["reason"] == "GoalReached"
        phases = sorted((t["status"]["phase"], t["status"].get("reason")) for t in trials(world))
        assert phases == [("Failed", "Cancelled"), ("Failed", "Cancelled"), ("Succeeded", None)]
        assert len(world.api.of_kind("Job")) == 1  # the cancelled trials' Jobs are deleted

    scenario(budget, body)


def test_max_duration_stops_new_trials_and_ends_with_deadline_exceeded() -> None:
    """The first trials must start before the deadline: 3 s leave room for a slow first pass on a busy machine."""
    budget = {"maxTrials": 50, "parallelTrials": 2, "maxDuration": "3s"}

    async def body(world: World) -> None:
        rec = await started(world)
        await step(rec)
        await settle(rec)  # status.startTime is written
        await asyncio.sleep(3.1)
        await drive(world, rec)
        st = exp_status(world)
        assert {c["type"]: c for c in st["conditions"]}["Succeeded"]["reason"] == "DeadlineExceeded"
        assert st["trials"]["total"] < 50

    scenario(budget, body)


def test_a_history_with_unwritten_trials_is_recovered_exactly() -> None:
    """Operator and controller lost while Trials were being written: the hole is asked again."""
    budget = {"maxTrials": 12, "parallelTrials": 3}

    async def body(world: World) -> None:
        rec = await started(world)
        await step(rec)  # asks 0, 1, 2
        for _ in range(3):  # one result at a time: each tell counts the candidates asked before it
            await world.run_pods(most=1)
            await step(rec)
        await settle(rec)
        await rec.status_writer.close()
        # Trial 3 was asked before later results were told; now lose it (and its Job) as if it had
        # never been written, and lose both processes.
        lost = next(t for t in trials(world) if t["spec"]["index"] == 3)
        told_after = [t for t in trials(world) if (t.get("status") or {}).get("asksBeforeTell", 0) > 3]
        assert told_after, "the scenario needs a result told after candidate 3 was asked"
        for key in [k for k in world.api.objects if k[3] in ("exp-00003",) or k[3].startswith("exp-00003-")]:
            del world.api.objects[key]
        await world.controller_up()  # a fresh controller: empty memory
        second = world.reconciler()  # a fresh operator
        await step(second)
        again = next(t for t in trials(world) if t["spec"]["index"] == 3)
        assert again["spec"]["architecture"] == lost["spec"]["architecture"]
        await drive(world, second)
        assert exp_status(world)["phase"] == "Succeeded"
        from kubenas.api.v1alpha1 import SearchExperimentSpec

        records = [TrialView.parse(t).record() for t in trials(world)]
        Search(SearchExperimentSpec.model_validate({**SPEC, "budget": budget}), records)

    scenario(budget, body)


def test_the_next_trial_waits_for_the_result_write_and_a_failed_write_is_done_again() -> None:
    """The result is written beside the next /ask, but the next Trial and Job only follow the write."""
    budget = {"maxTrials": 3, "parallelTrials": 1}

    async def body(world: World) -> None:
        rec = await started(world)
        await step(rec)
        first = names.trial_name("exp", 0)
        assert [t["metadata"]["name"] for t in trials(world)] == [first]
        patch, failures = world.api.patch, []

        async def flaky(api_version: str, kind: str, ns: str, name: str, body: Any, subresource: Any = None) -> Any:
            if kind == "Trial" and "tellSequence" in (body.get("status") or {}) and not failures:
                failures.append(name)
                raise ApiError(503, "ServiceUnavailable", "etcd is busy")
            return await patch(api_version, kind, ns, name, body, subresource)

        world.api.patch = flaky  # type: ignore[method-assign]
        await world.run_pods()
        await step(rec)  # told; the write fails: the candidate asked meanwhile must not become objects
        assert failures == [first]
        assert [t["metadata"]["name"] for t in trials(world)] == [first]
        assert len(world.api.of_kind("Job")) == 1
        assert "tellSequence" not in (trials(world)[0].get("status") or {})
        await step(rec)  # the same record written again, then the next Trial and Job
        status = trials(world)[0]["status"]
        assert (status["phase"], status["tellSequence"], status["asksBeforeTell"]) == ("Succeeded", 0, 1)
        assert [t["metadata"]["name"] for t in trials(world)] == [first, names.trial_name("exp", 1)]
        assert len(world.api.of_kind("Job")) == 2
        await drive(world, rec)
        assert exp_status(world)["phase"] == "Succeeded"
        history = [TrialView.parse(t).record() for t in trials(world)]
        replayed = Search(rec.accepted, [])  # an unbroken run asks the same candidates
        for record in history:
            assert replayed.ask(record.index, 1)[0].architecture == record.architecture
            replayed.tell(record.index, record.observation())

    scenario(budget, body)


def test_a_job_the_api_server_refuses_fails_the_experiment_instead_of_retrying_forever() -> None:
    budget = {"maxTrials": 4, "parallelTrials": 2}

    async def body(world: World) -> None:
        rec = await started(world)
        create = world.api.create

        async def refuse_jobs(obj: Mapping[str, Any]) -> dict[str, Any]:
            if obj["kind"] == "Job":
                raise Invalid(422, "Invalid", f'Job.batch "{obj["metadata"]["name"]}" is invalid: spec.template: bad')
            return await create(obj)

        world.api.create = refuse_jobs  # type: ignore[method-assign]
        for _ in range(3):
            await rec._pass()  # as the loop runs it: a Fatal ends the experiment, nothing is retried
            await rec.writes.done()
            await settle(rec)
        st = exp_status(world)
        assert st["phase"] == "Failed"
        failed = {c["type"]: c for c in st["conditions"]}["Failed"]
        assert failed["reason"] == "TrialRefused"
        assert "exp-0000" in failed["message"] and "is invalid: spec.template: bad" in failed["message"]
        assert "TrialRefused" in [r for r, _ in world.api.events]

    scenario(budget, body)


def test_with_an_artifact_store_each_trial_and_the_best_name_where_their_weights_are() -> None:
    budget = {"maxTrials": 3, "parallelTrials": 3}

    async def body(world: World) -> None:
        exp = world.api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]
        exp["spec"]["artifacts"] = {"persistentVolumeClaim": "weights", "path": "runs"}
        rec = await started(world)
        await drive(world, rec)
        for trial in trials(world):
            location = trial["status"]["artifacts"]
            assert location["persistentVolumeClaim"] == "weights"
            assert location["path"].startswith("runs/") and location["path"].endswith(trial["metadata"]["name"])
        best = exp_status(world)["bestTrial"]
        owner = next(t for t in trials(world) if t["metadata"]["name"] == best["name"])
        assert best["artifacts"] == owner["status"]["artifacts"]

    scenario(budget, body)


def test_a_job_refused_its_pods_for_good_fails_the_experiment_naming_why() -> None:
    """A missing PriorityClass: admission cannot know, the Job controller only says so in its events."""
    budget = {"maxTrials": 2, "parallelTrials": 1}

    async def body(world: World) -> None:
        rec = await started(world)
        await step(rec)
        (job,) = world.api.of_kind("Job")
        name = job["metadata"]["name"]
        world.api.objects[("batch/v1", "Job", NS, name)]["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
        message = 'pods "x" is forbidden: no PriorityClass with name no-such was found'
        await world.api.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{name}.1", "namespace": NS},
                "involvedObject": {"kind": "Job", "name": name, "uid": job["metadata"]["uid"]},
                "reason": "FailedCreate",
                "message": message,
            }
        )
        await rec._pass()
        await settle(rec)
        failed = {c["type"]: c for c in exp_status(world)["conditions"]}["Failed"]
        assert failed["reason"] == "TrialPodRefused" and "no PriorityClass with name no-such" in failed["message"]

    scenario(budget, body)


def test_only_refusals_no_retry_can_fix_end_the_experiment() -> None:
    from kubenas.operator.reconciler import _refused_for_good

    assert _refused_for_good(
        'pods "a" is forbidden: error looking up service account ns/robot: serviceaccount "robot" not found'
    )
    assert not _refused_for_good('pods "a" is forbidden: exceeded quota: gpus, requested: nvidia.com/gpu=1')
    assert not _refused_for_good("Internal error occurred: resource quota evaluation timed out")


def test_a_pass_that_fails_after_results_were_stored_loses_none_of_them() -> None:
    """The stored results reach the driver even when the pass that reads them fails (the API server
    down while a Job's pods are listed): otherwise what was asked after them is held for ever."""
    budget = {"maxTrials": 3, "parallelTrials": 1}

    async def body(world: World) -> None:
        rec = await started(world)
        await step(rec)
        await world.run_pods()
        await rec.reconcile()  # told and stored; the next Trial waits for the next pass
        await rec.writes.done()
        assert rec.writes.stored and len(trials(world)) == 1
        observe = rec._observe

        async def down(driver: Any) -> Any:
            await observe(driver)  # reads the pods and Jobs, then a call fails half-way through the pass
            raise ApiError(0, "Unreachable", "the API server is restarting")

        rec._observe = down  # type: ignore[method-assign]
        await rec._pass()  # fails and is retried later
        rec._observe = observe  # type: ignore[method-assign]
        await step(rec)
        assert [t["spec"]["index"] for t in trials(world)] == [0, 1]
        await drive(world, rec)
        assert exp_status(world)["phase"] == "Succeeded"

    scenario(budget, body)


def one_shot(world: World) -> dict[str, Any]:
    """Make the experiment a one-shot search (with the artifact store the cluster requires)."""
    exp = world.api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]
    exp["spec"]["oneShot"] = {"evaluations": 4, "topK": 2, "supernetSettings": {"epochs": 9}}
    exp["spec"]["artifacts"] = {"persistentVolumeClaim": "store", "path": "runs"}
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "store", "namespace": NS}}
    world.api.objects[("v1", "PersistentVolumeClaim", NS, "store")] = claim  # looked up while a pod waits
    return exp


def test_a_one_shot_search_starts_with_its_supernet_job_then_starts_the_evaluator() -> None:
    budget = {"maxTrials": 2, "parallelTrials": 1}

    async def body(world: World) -> None:
        one_shot(world)
        rec = await started(world)
        await step(rec)
        await settle(rec)
        [job] = world.api.of_kind("Job")
        assert job["metadata"]["name"] == "exp-supernet" and trials(world) == []  # the supernet is no Trial
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert container["command"] == ["python3", "-m", "kubenas_trainer.oneshot", "train"]
        assert json.loads(env["KUBENAS_SETTINGS"]) == {"epochs": 9}
        assert env["KUBENAS_SEED"] == str(supernet_seed(SearchExperimentSpec.model_validate(exp_status_spec(world))))
        assert env["KUBENAS_OUTPUT_DIR"] == "/kubenas/output/runs/exp/exp-supernet"
        assert exp_status(world)["oneShot"]["phase"] == "Supernet"

        await world.run_pods()  # the supernet trains and reports
        await step(rec)
        await settle(rec)
        shot = exp_status(world)["oneShot"]
        assert shot["phase"] == "Search"
        assert shot["supernet"] == {"attempts": 1, "succeeded": True, "failed": False, "metrics": {"val_accuracy": 0.0}}
        [evaluator] = [d for d in world.api.of_kind("Deployment") if d["metadata"]["name"] == "exp-evaluator"]
        command = evaluator["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[:3] == ["kubenas", "controller", "evaluator"]
        assert command[command.index("--checkpoint") + 1] == "/kubenas/output/runs/exp/exp-supernet"
        assert [m.split(":")[0] for r, m in world.api.events if r == "PhaseStarted"] == [
            "phase Supernet",
            "phase Search",
        ]
        # a restarted operator reads phase 1's record from the status: no second supernet, no repeated event
        again = world.reconciler()
        await step(again)
        await settle(again)
        assert [j["metadata"]["name"] for j in world.api.of_kind("Job")] == ["exp-supernet"]
        assert exp_status(world)["oneShot"]["phase"] == "Search"
        assert sum(1 for r, _ in world.api.events if r == "PhaseStarted") == 2

    scenario(budget, body)


def test_a_one_shot_search_whose_supernet_fails_fails_with_a_condition() -> None:
    budget = {"maxTrials": 2, "parallelTrials": 1}

    async def body(world: World) -> None:
        one_shot(world)
        rec = await started(world)
        await world.run_pods(fail=lambda arch: 2)  # the trainer refuses its configuration: never retried
        for _ in range(3):
            await rec._pass()  # as the loop runs it: a Fatal ends the experiment
            await rec.writes.done()
            await settle(rec)
        st = exp_status(world)
        assert st["phase"] == "Failed"
        failed = {c["type"]: c for c in st["conditions"]}["Failed"]
        assert failed["reason"] == "SupernetFailed" and "ConfigurationError" in failed["message"]
        assert st["oneShot"]["supernet"]["failed"] and st["oneShot"]["phase"] == "Supernet"
        assert trials(world) == [] and [j["metadata"]["name"] for j in world.api.of_kind("Job")] == ["exp-supernet"]

    scenario(budget, body)


def test_an_enas_supernet_job_waits_for_the_controller_and_draws_its_paths_from_it() -> None:
    budget = {"maxTrials": 2, "parallelTrials": 1}

    async def body(world: World) -> None:
        one_shot(world)["spec"]["oneShot"]["sampling"] = "enas"
        rec = world.reconciler()
        await step(rec)  # the controller's objects; no controller pod yet: no supernet Job either
        await settle(rec)
        assert world.api.of_kind("Job") == []
        assert "waiting for the controller pod" in exp_status(world)["message"]
        await world.controller_up()
        await step(rec)
        [job] = world.api.of_kind("Job")
        env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        port = world.endpoint[0].port
        assert env[paths.URL_ENV] == f"http://127.0.0.1:{port} http://exp-controller.{NS}.svc:{names.CONTROLLER_PORT}"
        assert paths.authorized(rec.token or "", "exp-supernet", env[paths.TOKEN_ENV])
        assert json.loads(env[paths.CONFIG_ENV])["seed"] == int(env["KUBENAS_SEED"])

    scenario(budget, body)


def test_an_evaluator_that_keeps_failing_to_start_fails_the_experiment_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    budget = {"maxTrials": 2, "parallelTrials": 1}
    monkeypatch.setattr(oneshot, "EVALUATOR_CHECK_S", 0.0)  # its pods are read on every pass

    async def body(world: World) -> None:
        one_shot(world)
        rec = await started(world)
        await step(rec)
        await world.run_pods()  # the supernet trains and reports
        await step(rec)
        await settle(rec)
        assert exp_status(world)["oneShot"]["phase"] == "Search"
        crashed = {"exitCode": 1, "reason": "Error", "message": "cannot load the supernet in /kubenas/output"}
        status = {"name": "evaluator", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
        await world.api.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "exp-evaluator-1", "namespace": NS, "labels": names.evaluator_selector("exp")},
                "status": {"containerStatuses": [{**status, "lastState": {"terminated": crashed}}]},
            }
        )
        for _ in range(3):
            await rec._pass()  # as the loop runs it: a Fatal ends the experiment
            await rec.writes.done()
            await settle(rec)
        st = exp_status(world)
        assert st["phase"] == "Failed", st
        failed = {c["type"]: c for c in st["conditions"]}["Failed"]
        assert failed["reason"] == "EvaluatorFailed" and "exp-evaluator-1" in failed["message"]
        assert failed["message"].endswith("cannot load the supernet in /kubenas/output")
        [evaluator] = [d for d in world.api.of_kind("Deployment") if d["metadata"]["name"] == "exp-evaluator"]
        assert evaluator["spec"]["replicas"] == 0 and trials(world) == []

    scenario(budget, body)


class SlowRunningMarks(FakeApi):
    """An API server that answers a trial's "Running" status write late, after later writes (a loaded
    server may answer concurrent requests in any order)."""

    async def patch(
        self, api_version: str, kind: str, ns: str, name: str, patch: Mapping[str, Any], subresource: str | None = None
    ) -> dict[str, Any]:
        if kind == "Trial" and (patch.get("status") or {}).get("phase") == "Running":
            await asyncio.sleep(0.05)
        return await super().patch(api_version, kind, ns, name, patch, subresource)


def test_a_late_running_mark_never_lands_over_a_trials_result() -> None:
    async def main() -> None:
        api = SlowRunningMarks()
        budget = {"maxTrials": 2, "parallelTrials": 2}
        await api.create(experiment(budget))
        api.objects[(API_VERSION, "SearchExperiment", NS, "exp")]["metadata"]["uid"] = "uid-exp"
        world = World(api, budget)
        try:
            rec = await started(world)
            await step(rec)
            await world.run_pods()
            pods = api.of_kind("Pod")
            finished = [copy.deepcopy(p["status"]) for p in pods]
            for pod in pods:  # first seen running: the operator marks the trial Running (answered late)
                pod["status"] = {
                    "phase": "Running",
                    "containerStatuses": [
                        {"name": "trainer", "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}
                    ],
                }
            await step(rec)
            for pod, status in zip(pods, finished, strict=True):  # then ended: the result is stored at once
                pod["status"] = status
            await drive(world, rec)
            await asyncio.sleep(0.2)  # any write still under way lands now
            assert rec.final is not None
            assert [t["status"]["phase"] for t in trials(world)] == ["Succeeded"] * 2
        finally:
            await world.close()

    asyncio.run(main())

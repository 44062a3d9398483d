"""What the operator process holds once: its configuration, API client, metrics and workers.

kopf handlers receive it through ``memo.runtime`` and do nothing but hand events to it; the runtime
routes each event to the experiment's reconciler and wakes it.

With leader election (several replicas), every replica keeps kopf's indexes and the newest body of
each experiment (a warm standby), but only the replica holding the Lease runs reconcilers: it starts
one for every known experiment when it becomes leader and stops them all when it stops leading.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from kubenas.operator.kube import KubeApi
from kubenas.operator.leader import ElectionConfig, LeaderElector
from kubenas.operator.metrics import OperatorMetrics
from kubenas.operator.views import EndpointView, JobView, PodView, TrialView, resource_version

log = logging.getLogger("kubenas.operator")

ENV_PREFIX = "KUBENAS_OPERATOR_"


@dataclass(frozen=True)
class OperatorConfig:
    """Knobs of the operator process, from ``kubenas operator`` options or environment variables."""

    kubeconfig: str | None = None
    metrics_port: int | None = 8000
    metrics_address: str = "127.0.0.1"
    #: the experiment status is patched at most this often (counts and progress coalesce between)
    status_interval_s: float = 1.0
    #: longest wait before retrying a failed reconcile
    max_backoff_s: float = 30.0
    instance: str = field(default_factory=socket.gethostname)
    #: None: one replica, always leading; otherwise only the holder of this Lease runs experiments
    election: ElectionConfig | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name)
            return value if value not in (None, "") else None

        port = get("METRICS_PORT")
        return cls(
            kubeconfig=get("KUBECONFIG") or env.get("KUBECONFIG") or None,
            metrics_port=None if port == "off" else int(port) if port is not None else 8000,
            metrics_address=get("METRICS_ADDRESS") or "127.0.0.1",
            status_interval_s=float(get("STATUS_INTERVAL") or 1.0),
            max_backoff_s=float(get("MAX_BACKOFF") or 30.0),
            election=ElectionConfig.from_env(env),
        )

    def to_env(self) -> dict[str, str]:
        out = {
            ENV_PREFIX + "METRICS_PORT": "off" if self.metrics_port is None else str(self.metrics_port),
            ENV_PREFIX + "METRICS_ADDRESS": self.metrics_address,
            ENV_PREFIX + "STATUS_INTERVAL": str(self.status_interval_s),
            ENV_PREFIX + "MAX_BACKOFF": str(self.max_backoff_s),
        }
        if self.kubeconfig:
            out[ENV_PREFIX + "KUBECONFIG"] = self.kubeconfig
        out.update(self.election.to_env() if self.election is not None else ElectionConfig.disabled_env())
        return out


class Lookup(Protocol):
    """The read side of a kopf index: key → the values indexed under it."""

    def get(self, key: Any, default: Any = ...) -> Any: ...


@dataclass
class Indexes:
    """kopf's in-memory indexes of the watched objects, filled from the watch streams.

    kopf lists every indexed kind completely before it calls any handler, so a restarted operator
    never reconciles from a half-loaded cache.
    """

    trials: Lookup  # (namespace, experiment) → TrialView
    jobs: Lookup  # (namespace, trial) → JobView
    pods: Lookup  # (namespace, trial) → PodView
    endpoints: Lookup  # (namespace, experiment) → EndpointView

    def trials_of(self, namespace: str, experiment: str) -> Iterable[TrialView]:
        return self.trials.get((namespace, experiment), ())

    def job_of(self, namespace: str, trial: str) -> list[JobView]:
        return list(self.jobs.get((namespace, trial), ()))

    def pods_of(self, namespace: str, trial: str) -> list[PodView]:
        return list(self.pods.get((namespace, trial), ()))

    def endpoints_of(self, namespace: str, experiment: str) -> list[EndpointView]:
        return list(self.endpoints.get((namespace, experiment), ()))


class Reconciler(Protocol):
    """What the runtime and the handlers need of an experiment's reconciler."""

    uid: str

    def start(self) -> None: ...

    def wake(self) -> None: ...

    def observe_experiment(self, body: Mapping[str, Any]) -> None: ...

    def note_termination(self, pod_uid: str) -> None: ...

    async def stop(self) -> None: ...


ReconcilerFactory = Callable[["Runtime", Mapping[str, Any]], Reconciler]
ExperimentKey = tuple[str, str]  # (namespace, name)


def experiment_key(body: Mapping[str, Any]) -> ExperimentKey:
    meta = body.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


class Transitions:
    """The last state seen of each watched trainer pod and Job, by uid.

    A trainer pod sends several watch events after it ends (the Job controller removes its
    finalizer, status is rewritten); only a change of state (waiting, running, terminated; complete,
    failed) is news to the reconciler, so only that wakes it. Fewer idle passes also means that
    the pass a trainer's end needs starts at once instead of queueing behind them.
    """

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def changed(self, uid: str, state: str | None, gone: bool = False) -> bool:
        """Record ``state`` (None: nothing to tell yet) and say whether it differs from the last one."""
        before = self._seen.pop(uid, None) if gone else self._seen.get(uid)
        if state is not None and not gone:
            self._seen[uid] = state
        return state is not None and state != before

    def __len__(self) -> int:
        return len(self._seen)


class Runtime:
    """The operator process: API client, controller HTTP session, metrics, the known experiments and,
    while this process leads, one reconciler per experiment."""

    def __init__(
        self,
        config: OperatorConfig,
        api: KubeApi,
        metrics: OperatorMetrics,
        reconciler_factory: ReconcilerFactory | None = None,
    ) -> None:
        self.config = config
        self.api = api
        self.metrics = metrics
        self.make_reconciler = reconciler_factory
        self.indexes: Indexes | None = None
        #: the newest body of every experiment the watch has shown, kept on standby too
        self.experiments: dict[ExperimentKey, Mapping[str, Any]] = {}
        self.reconcilers: dict[ExperimentKey, Reconciler] = {}
        self.phases: dict[ExperimentKey, str] = {}
        self.transitions = Transitions()
        self.elector: LeaderElector | None = None
        self.leading = config.election is None
        self.metrics.leader.set(1 if self.leading else 0)
        self._http: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[Any]] = set()

    @classmethod
    def create(cls, config: OperatorConfig, reconciler_factory: ReconcilerFactory | None = None) -> Runtime:
        metrics = OperatorMetrics()
        api = KubeApi.from_config(config.kubeconfig, observer=metrics.observe_request)
        return cls(config, api, metrics, reconciler_factory)

    def start(self) -> None:
        """Join the election, if one is configured (alone, this process leads from the start)."""
        if self.config.election is not None and self.elector is None:
            self.elector = LeaderElector(self.api, self.config.election, on_lead=self.lead, on_stand_by=self.stand_by)
            self.elector.start()

    @property
    def http(self) -> aiohttp.ClientSession:
        """The session used to call controllers (keep-alive connections per pod IP)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False))
        return self._http

    # -- experiments -------------------------------------------------------------------------
    def use_indexes(self, indexes: Mapping[str, Any]) -> None:
        """Adopt kopf's indexes (handed to every handler as keyword arguments) on first sight."""
        if self.indexes is None and "trial_index" in indexes:
            self.indexes = Indexes(
                trials=indexes["trial_index"],
                jobs=indexes["job_index"],
                pods=indexes["pod_index"],
                endpoints=indexes["endpoint_index"],
            )

    def observe(self, body: Mapping[str, Any], indexes: Mapping[str, Any]) -> Reconciler | None:
        """Remember the newest copy of an experiment; while leading, hand it to the experiment's
        reconciler (started on first sight), woken when the spec changed.

        The wake on a new generation matters with several replicas: kopf's change detection is kept
        in annotations that every replica writes, so the leader may see a spec edit only as a plain
        event after a standby has already marked it handled.
        """
        self.use_indexes(indexes)
        key = experiment_key(body)
        previous = self.experiments.get(key)
        if previous is not None and _uid(previous) != _uid(body):
            previous = None  # a new experiment under a reused name
        if previous is not None and resource_version(body) < resource_version(previous):
            body = previous  # watch events and our own patches race: the newer copy wins
        self.experiments[key] = body
        if not self.leading:
            return None
        reconciler = self._reconciler(key, body)
        reconciler.observe_experiment(body)
        if previous is not None and _generation(body) != _generation(previous):
            reconciler.wake()
        return reconciler

    async def forget(self, body: Mapping[str, Any]) -> None:
        """The experiment is being deleted: stop its reconciler and drop its metric series."""
        key = experiment_key(body)
        known = self.experiments.get(key)
        if known is None or _uid(known) != _uid(body):
            return  # an older experiment of the same name, already replaced
        del self.experiments[key]
        reconciler = self.reconcilers.pop(key, None)
        if reconciler is not None:
            await reconciler.stop()
        self.metrics.forget(*key)
        self.set_phase(key, None)
        log.info("experiment deleted", extra={"namespace": key[0], "experiment": key[1]})

    def _reconciler(self, key: ExperimentKey, body: Mapping[str, Any]) -> Reconciler:
        """The experiment's reconciler, started on first sight (or replaced if the name was reused)."""
        current = self.reconcilers.get(key)
        if current is None or current.uid != _uid(body):
            if current is not None:
                self.spawn(current.stop(), f"stop {key[1]}")
            if self.make_reconciler is None:
                raise RuntimeError("the runtime was created without a reconciler factory")
            current = self.make_reconciler(self, body)
            self.reconcilers[key] = current
            current.start()
        return current

    # -- leadership --------------------------------------------------------------------------
    async def lead(self) -> None:
        """This process won the Lease: run every known experiment, rebuilt from the objects."""
        self.leading = True
        self.metrics.leader.set(1)
        for key, body in list(self.experiments.items()):
            self._reconciler(key, body)
        log.info("leading", extra={"experiments": len(self.experiments)})

    async def stand_by(self) -> None:
        """This process no longer holds the Lease: stop every reconciler and its pending writes."""
        self.leading = False
        self.metrics.leader.set(0)
        reconcilers, self.reconcilers = list(self.reconcilers.values()), {}
        await asyncio.gather(*(r.stop() for r in reconcilers), return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        for key in list(self.phases):
            self.set_phase(key, None)

    def set_phase(self, key: tuple[str, str], phase: str | None) -> None:
        """Track each experiment's phase for the ``kubenas_experiments`` gauge (None: forgotten)."""
        if phase is None:
            self.phases.pop(key, None)
        elif self.phases.get(key) == phase:
            return
        else:
            self.phases[key] = phase
        for p in ("Pending", "Running", "Succeeded", "Failed"):
            self.metrics.experiments.labels(p).set(sum(1 for v in self.phases.values() if v == p))

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background (events, status writes), logging failures instead of losing them."""
        task = asyncio.get_running_loop().create_task(coro, name=what)
        self._background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("background task failed", extra={"task": what, "error": repr(t.exception())})

        task.add_done_callback(done)
        return task

    async def close(self) -> None:
        """Stop: a leader stops its reconcilers, then releases the Lease so a standby takes over at once."""
        if self.elector is not None:
            await self.elector.stop()
        for reconciler in list(self.reconcilers.values()):
            await reconciler.stop()
        for task in list(self._background):
            task.cancel()
        await self.api.close()
        if self._http is not None:
            await self._http.close()


def _uid(body: Mapping[str, Any]) -> str | None:
    return (body.get("metadata") or {}).get("uid")


def _generation(body: Mapping[str, Any]) -> int | None:
    return (body.get("metadata") or {}).get("generation")

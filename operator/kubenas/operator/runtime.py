"""What the operator process holds once: its configuration, API client, metrics and workers.

kopf handlers receive it through ``memo.runtime`` and do nothing but hand events to it; the runtime
routes each event to the experiment's reconciler and wakes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from kubenas.operator.kube import KubeApi
from kubenas.operator.metrics import OperatorMetrics
from kubenas.operator.views import EndpointView, JobView, PodView, TrialView

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


class Runtime:
    """The operator process: API client, controller HTTP session, metrics, and one reconciler per experiment."""

    def __init__(self, config: OperatorConfig, api: KubeApi, metrics: OperatorMetrics) -> None:
        self.config = config
        self.api = api
        self.metrics = metrics
        self.indexes: Indexes | None = None
        self.reconcilers: dict[tuple[str, str], Any] = {}
        self.phases: dict[tuple[str, str], str] = {}
        self._http: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[Any]] = set()

    @classmethod
    def create(cls, config: OperatorConfig) -> Runtime:
        metrics = OperatorMetrics()
        api = KubeApi.from_config(config.kubeconfig, observer=metrics.observe_request)
        return cls(config, api, metrics)

    @property
    def http(self) -> aiohttp.ClientSession:
        """The session used to call controllers (keep-alive connections per pod IP)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False))
        return self._http

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

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        """Run ``coro`` in the background (events, status writes), logging failures instead of losing them."""
        task = asyncio.get_running_loop().create_task(coro, name=what)
        self._background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("background task failed", extra={"task": what, "error": repr(t.exception())})

        task.add_done_callback(done)

    async def close(self) -> None:
        for reconciler in list(self.reconcilers.values()):
            await reconciler.stop()
        for task in list(self._background):
            task.cancel()
        await self.api.close()
        if self._http is not None:
            await self._http.close()

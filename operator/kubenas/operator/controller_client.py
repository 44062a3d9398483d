"""The operator's side of the controller protocol (``kubenas.controller.protocol``).

The operator reaches each experiment's controller at its pod IP, read from the EndpointSlice of the
controller's headless Service; never through a ClusterIP (there may be no kube-proxy at all).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from kubenas.controller import evaluator, progress, protocol
from kubenas.core.codec import status_wire, trial_wire
from kubenas.core.driver import Candidate
from kubenas.core.errors import KubenasError
from kubenas.core.records import TrialRecord


class ControllerUnavailable(KubenasError):
    """The controller cannot be reached (starting, restarting, gone): try again soon."""


class ControllerOutOfSync(KubenasError):
    """The controller's history differs from the Trials (it restarted): replay, then retry."""


class ControllerRefused(KubenasError):
    """The controller refused a request for good (bad request, token, a history that does not replay)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True)
class Endpoint:
    """Where one experiment's controller listens, and its token."""

    host: str
    port: int
    token: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class ControllerClient:
    """Calls one controller. Sessions are shared by all experiments (keep-alive per pod IP)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: Endpoint,
        timeout: float = 60.0,
        observer: Callable[[str, float], None] | None = None,
    ) -> None:
        self.session = session
        self.endpoint = endpoint
        self.observer = observer
        self._seconds = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.endpoint.token}"}
        limit = self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout)
        started = time.perf_counter()
        try:
            async with self.session.request(
                method, self.endpoint.url + path, json=body, headers=headers, timeout=limit
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ControllerUnavailable(f"{method} {self.endpoint.url}{path}: {exc!r}") from None
        finally:
            if self.observer is not None:
                self.observer(path, time.perf_counter() - started)
        try:
            data = json.loads(text) if text else {}
        except json.JSONDecodeError:
            raise ControllerUnavailable(f"{path}: answer is not JSON (HTTP {status})") from None
        if status >= 500:
            raise ControllerUnavailable(f"{path}: HTTP {status}")
        if status >= 400:
            error = data.get("error") or {}
            code, message = str(error.get("code", status)), str(error.get("message", text))
            if code in (protocol.OUT_OF_SYNC, protocol.NOT_CONFIGURED):
                raise ControllerOutOfSync(message)
            if code == protocol.UNAUTHORIZED:  # a controller started with another token: it will be replaced
                raise ControllerUnavailable(f"{path}: {message}")
            raise ControllerRefused(code, message)
        return data

    async def health(self) -> protocol.State:
        return protocol.State.from_json((await self._call("GET", "/health"))["state"])

    async def replay(self, experiment: str, spec: Mapping[str, Any], trials: Sequence[TrialRecord]) -> protocol.State:
        body = {"experiment": experiment, "spec": dict(spec), "trials": [trial_wire(t, experiment) for t in trials]}
        return protocol.State.from_json((await self._call("POST", "/replay", body))["state"])

    async def ask(self, index: int, count: int) -> tuple[list[Candidate], protocol.State]:
        data = await self._call("POST", "/ask", {"index": index, "count": count})
        candidates = [protocol.candidate_from_json(c) for c in data["candidates"]]
        return candidates, protocol.State.from_json(data["state"])

    async def tell(self, trial: TrialRecord) -> tuple[bool, protocol.State]:
        data = await self._call("POST", "/tell", {"index": trial.index, "status": status_wire(trial)})
        return bool(data["told"]), protocol.State.from_json(data["state"])

    async def evaluate(self, index: int, architecture: Mapping[str, Any]) -> dict[str, Any]:
        """A one-shot search's evaluator (same transport, another pod): one candidate scored on the supernet,
        ``{"index", "exitCode", "result"}`` (exitCode None: the evaluate process died before answering)."""
        # as long as the evaluator may take (a restart of its command, loading, then the answer; it
        # answers exitCode None past that), not the short default: a request timed out here fails the
        # pass, and the same candidate would time out again on every pass after it
        timeout = 2 * evaluator.ANSWER_TIMEOUT_S + self._seconds
        return await self._call("POST", "/evaluate", {"index": index, "architecture": dict(architecture)}, timeout)

    async def points(
        self, instance: str | None, after: int, wait: float = 0.0
    ) -> tuple[list[progress.Point], bool, protocol.State]:
        """Trainer reports numbered above ``after`` of controller ``instance`` (from the start for another
        instance), waiting up to ``wait`` seconds for one; also whether some aged out unread."""
        body = {"instance": instance, "after": after, "wait": wait}
        data = await self._call("POST", progress.POINTS_PATH, body, timeout=wait + self._seconds)
        found = [progress.Point.from_json(p) for p in data["points"]]
        return found, bool(data.get("dropped")), protocol.State.from_json(data["state"])

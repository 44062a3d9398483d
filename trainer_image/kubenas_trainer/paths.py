"""The ENAS path channel's trainer side: paths pulled from the controller's policy, per-path rewards pushed.

The runner (local mode, or the operator for the supernet Job) gives the supernet trainer
``KUBENAS_PATHS_URL`` (the controller's addresses, space-separated, tried in order),
``KUBENAS_PATHS_TOKEN`` (a credential for this channel and this trial only) and ``KUBENAS_ENAS``
(the policy's config: search space, seed, ENAS settings, passed on to the controller as is).

Unlike the progress channel this one is on the training path: ENAS trains on the policy's paths, so
a request waits for its answer and is retried with backoff; a controller unreachable for longer
than the retries fails the attempt (:class:`PathsUnavailable`, exit code 1), which the trial rule
retries. **The record of paths and rewards is kept here** (:attr:`PathsClient.record`): when the
controller answers 409 (it restarted and lost the policy, or is out of step) the client replays the
record, which rebuilds the policy exactly, and repeats the request. Standard library only.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from kubenas_trainer.contract import _json_object
from kubenas_trainer.errors import ContractError, TrainerError

ENV_PATHS_URL = "KUBENAS_PATHS_URL"
ENV_PATHS_TOKEN = "KUBENAS_PATHS_TOKEN"
ENV_ENAS = "KUBENAS_ENAS"
ENV_TRIAL = "KUBENAS_TRIAL"
#: HTTP status of the controller's "replay first" answers (NotConfigured, OutOfSync)
REPLAY_FIRST = 409


class PathsUnavailable(TrainerError):
    """The controller could not be reached, or refused a path request that a replay cannot fix.

    Exit code 1, an ordinary failure, not 2: the attempt is retried (``trialTemplate.retries``), as a
    controller that is being rescheduled answers again a moment later.
    """

    exit_code = 1


class PathsClient:
    """Draws paths and reports rewards for one trial, keeping the record that rebuilds the policy."""

    def __init__(
        self,
        urls: Sequence[str],
        token: str,
        trial: str,
        config: Mapping[str, Any],
        *,
        timeout: float = 60.0,
        attempts: int = 6,
        backoff: float = 0.5,
    ) -> None:
        if not urls:
            raise ValueError("the path channel needs at least one URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.token = token
        self.trial = trial
        self.config = dict(config)
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        #: every path drawn, by index, with its reward and tell position once rewarded
        self.record: list[dict[str, Any]] = []
        self.replays = 0
        self._good = 0
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # pod to pod: never a proxy

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> PathsClient | None:
        """The client the environment names; None without ``KUBENAS_ENAS`` (uniform sampling)."""
        config = _json_object(env, ENV_ENAS)
        if config is None:
            return None
        urls = env.get(ENV_PATHS_URL, "").split()
        if not urls:
            raise ContractError(ENV_PATHS_URL, "is not set: ENAS sampling draws its paths from the controller")
        trial = env.get(ENV_TRIAL, "")
        if not trial:
            raise ContractError(ENV_TRIAL, "is not set: the path channel authorizes by trial")
        return cls(urls, env.get(ENV_PATHS_TOKEN, ""), trial, config, **options)

    @property
    def enas(self) -> Mapping[str, Any]:
        """The ENAS settings of the config (wire form)."""
        return self.config.get("enas") or {}

    def start(self) -> None:
        """A fresh policy for this attempt (an empty record)."""
        self.record = []
        self._replay()

    def draw(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` paths of the policy, each ``{"index", "architecture"}``."""
        answer = self._call("/paths", {"trial": self.trial, "index": len(self.record), "count": count})
        paths = answer["paths"]
        for path in paths:
            if path["index"] == len(self.record):
                self.record.append(path)
        return paths

    def reward(self, rewards: Sequence[tuple[int, float | None]]) -> None:
        """Tell the policy each path's own reward (None: the path cannot be built), in this order."""
        body = {"trial": self.trial, "rewards": [{"index": i, "reward": r} for i, r in rewards]}
        for path in self._call("/rewards", body)["paths"]:
            self.record[path["index"]] = path

    # -- HTTP ---------------------------------------------------------------------------------
    def _replay(self) -> None:
        self._post("/paths/replay", {"trial": self.trial, "config": self.config, "paths": self.record})
        self.replays += 1

    def _call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``path``'s answer; a "replay first" answer is met by replaying the record once."""
        try:
            return self._post(path, body)
        except _ReplayFirst:
            self._replay()
        try:
            return self._post(path, body)
        except _ReplayFirst as exc:  # a record the controller does not accept: no second replay fixes it
            raise PathsUnavailable(ENV_PATHS_URL, f"{path} is out of step with the record: {exc}") from None

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        problem = ""
        for attempt in range(self.attempts):
            for k in range(len(self.urls)):
                i = (self._good + k) % len(self.urls)
                request = urllib.request.Request(self.urls[i] + path, data=data, headers=headers, method="POST")
                try:
                    with self._opener.open(request, timeout=self.timeout) as response:
                        answer = json.loads(response.read())
                    self._good = i
                    return answer
                except urllib.error.HTTPError as exc:
                    detail = exc.read().decode(errors="replace")[:500]
                    if exc.code == REPLAY_FIRST:
                        raise _ReplayFirst(detail) from None
                    if 400 <= exc.code < 500:
                        raise PathsUnavailable(ENV_PATHS_URL, f"the controller refused {path}: {detail}") from None
                    problem = f"HTTP {exc.code}"
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    problem = str(exc)
            if attempt + 1 < self.attempts:
                time.sleep(self.backoff * 2**attempt)
        raise PathsUnavailable(ENV_PATHS_URL, f"the controller is unreachable at {' '.join(self.urls)}: {problem}")


class _ReplayFirst(Exception):
    """The controller lost the policy or is out of step: replay the record, then ask again."""

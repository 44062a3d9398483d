"""The push channel's trainer side: each epoch's metrics posted to the experiment's controller pod.

On Kubernetes nobody reads a trainer's stdout while it runs, so the operator gives the pod
``KUBENAS_PROGRESS_URL`` (the controller's addresses, space-separated, tried in order) and
``KUBENAS_PROGRESS_TOKEN`` (a credential that can only report for this trial). Without them (local
mode, another runner) nothing is posted and stdout stays the only channel.

The channel must never cost the trial anything: points go out from a daemon thread, so training
never waits on the network; a point is tried a few times with a short backoff, then dropped; a full
queue drops its oldest point; :meth:`ProgressChannel.close` waits at most a moment. The final result
never travels here (it is the termination message).

Kept free of the kubenas package, like the rest of the trainer: the standard library only.
"""

from __future__ import annotations

import json
import math
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

ENV_PROGRESS_URL = "KUBENAS_PROGRESS_URL"
ENV_PROGRESS_TOKEN = "KUBENAS_PROGRESS_TOKEN"
ENV_TRIAL = "KUBENAS_TRIAL"
PATH = "/progress"


class ProgressChannel:
    """Posts ``{"trial", "step", "metrics"}`` to the first controller address that answers."""

    def __init__(
        self,
        urls: list[str],
        token: str,
        trial: str,
        *,
        timeout: float = 2.0,
        attempts: int = 3,
        backoff: float = 0.25,
        queue_size: int = 256,
    ) -> None:
        if not urls:
            raise ValueError("the progress channel needs at least one URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.token = token
        self.trial = trial
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.sent = 0
        self.dropped = 0
        self._good = 0  # index of the address that answered last
        self._queue: queue.Queue[tuple[int, dict[str, float]] | None] = queue.Queue(maxsize=queue_size)
        self._warned = False
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # pod to pod: never a proxy
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> ProgressChannel | None:
        """The channel the environment names, or None when it names none."""
        urls = env.get(ENV_PROGRESS_URL, "").split()
        trial = env.get(ENV_TRIAL, "")
        if not urls or not trial:
            return None
        return cls(urls, env.get(ENV_PROGRESS_TOKEN, ""), trial, **options)

    def send(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Queue one epoch's metrics (never blocks; the oldest queued point goes if the queue is full)."""
        numbers = {
            str(k): float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }
        while True:
            try:
                self._queue.put_nowait((int(step), numbers))
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def close(self, timeout: float = 1.0) -> None:
        """Let the queued points go out for at most ``timeout`` seconds, then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    # -- the sending thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._post(*item):
                self.sent += 1
            else:
                self.dropped += 1

    def _post(self, step: int, metrics: dict[str, float]) -> bool:
        body = json.dumps({"trial": self.trial, "step": step, "metrics": metrics}).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        for attempt in range(self.attempts):
            for k in range(len(self.urls)):
                i = (self._good + k) % len(self.urls)
                request = urllib.request.Request(self.urls[i] + PATH, data=body, headers=headers, method="POST")
                try:
                    with self._opener.open(request, timeout=self.timeout) as response:
                        response.read()
                    self._good = i
                    return True
                except urllib.error.HTTPError as exc:
                    if 400 <= exc.code < 500:  # refused (credential, body): no retry can change that
                        self._warn(f"the controller refused an epoch report: HTTP {exc.code}")
                        return False
                except (urllib.error.URLError, OSError, ValueError):
                    continue  # unreachable, refused, timed out: the next address, then a retry
            if attempt + 1 < self.attempts:
                time.sleep(self.backoff * 2**attempt)
        self._warn(f"the controller is unreachable at {' '.join(self.urls)}; epoch {step} not reported")
        return False

    def _warn(self, message: str) -> None:
        """One line on stderr for the whole trial, so a long trial's log is not flooded; training goes on."""
        if not self._warned:
            self._warned = True
            print(f"kubenas-trainer: {message} (training goes on; the result is reported at the end)", file=sys.stderr)

"""Progress on stdout as JSON lines, and the final metrics as one JSON object in the result file.

The result file is a pod's termination message, which Kubernetes caps at 4096 bytes and which is
written once: the reporter keeps it under :data:`MAX_RESULT_BYTES`, drops values JSON cannot carry
(NaN, infinity) instead of writing invalid JSON, and ignores a second final report (a signal arriving
while the first is being written must not produce a mixed file).
"""

from __future__ import annotations

import json
import math
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from kubenas_trainer.progress import ProgressChannel

MAX_RESULT_BYTES = 4000
#: ``diverged``: training ended on a non-finite loss; told apart from ``completed`` so a runtime can rank
#: the candidate last instead of reading its (finite, often chance-level) accuracy as a real result
STATUSES = ("completed", "partial", "diverged", "bad_candidate")


def _plain(value: Any) -> Any:
    """``value`` made JSON-safe: non-finite floats become None, floats keep 6 significant digits."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def result_object(metrics: Mapping[str, Any], status: str, message: str | None) -> dict[str, Any]:
    """The final object of the contract: finite numeric metrics, ``status``, an optional ``message``; < 4,000 bytes."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    body: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        body[key] = _plain(value)
    body["status"] = status
    if message:
        body["message"] = message
    while len(json.dumps(body).encode()) > MAX_RESULT_BYTES:
        if len(body.get("message", "")) > 80:
            body["message"] = body["message"][: len(body["message"]) // 2] + "..."
        else:
            extra = [k for k in body if k not in ("status", "message")]
            body.pop(extra[-1] if extra else "message")
    return body


class Reporter:
    """Writes progress events to ``stream`` and the final metrics to ``result_file`` (once); epoch
    events also go to the push channel when the trial has one (on Kubernetes)."""

    def __init__(
        self, result_file: Path | None = None, stream: TextIO | None = None, channel: ProgressChannel | None = None
    ) -> None:
        self.result_file = result_file
        self.stream = stream or sys.stdout
        self.channel = channel
        self._final_lock = threading.Lock()
        self.final_written: dict[str, Any] | None = None

    def event(self, name: str, **fields: Any) -> None:
        line = json.dumps({"event": name, **_plain(fields)}, allow_nan=False)
        self.stream.write(line + "\n")
        self.stream.flush()
        if name == "epoch" and self.channel is not None:
            self.channel.send(fields["epoch"], fields.get("metrics") or {})

    def close(self, timeout: float = 1.0) -> None:
        """Give the push channel a moment to deliver its last points (it never holds the trial longer)."""
        if self.channel is not None:
            self.channel.close(timeout)

    def final(self, metrics: Mapping[str, Any], status: str = "completed", message: str | None = None) -> bool:
        """Write the final object; False when one was already written."""
        with self._final_lock:
            if self.final_written is not None:
                return False
            body = result_object(metrics, status, message)
            if self.result_file is not None:
                self.result_file.parent.mkdir(parents=True, exist_ok=True)
                self.result_file.write_text(json.dumps(body, allow_nan=False))
            self.final_written = body
        self.event("final", result=body)
        return True

    def failure(self, message: str) -> None:
        """On an exit other than 0 or 3: only ``{"message": ...}``, which Kubenas adds to the failure's detail."""
        with self._final_lock:
            if self.final_written is not None or self.result_file is None:
                return
            self.final_written = {"message": message[: MAX_RESULT_BYTES // 2]}
            self.result_file.parent.mkdir(parents=True, exist_ok=True)
            self.result_file.write_text(json.dumps(self.final_written))

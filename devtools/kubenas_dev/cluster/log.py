"""Structured ``key=value`` logging for the development cluster.

The cluster's pieces run as separate processes (launcher, node agent) whose logs end up in files
under the cluster directory; one event per line with stable keys makes them greppable when a test
fails in CI, without pulling a logging dependency into the operator image.
"""

from __future__ import annotations

import logging
import sys
from typing import Any


class KeyValueFormatter(logging.Formatter):
    """Render ``extra={"fields": {...}}`` as sorted ``key=value`` pairs after the message."""

    def format(self, record: logging.LogRecord) -> str:
        base = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname.lower()} {record.name}: {record.getMessage()}"
        fields: dict[str, Any] = getattr(record, "fields", {}) or {}
        if fields:
            base += " " + " ".join(f"{k}={_quote(v)}" for k, v in sorted(fields.items()))
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base


def _quote(value: Any) -> str:
    text = str(value)
    return repr(text) if (" " in text or not text) else text


class EventLogger:
    """A thin wrapper so call sites read ``log.info("pod started", pod=name, ip=ip)``."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _emit(self, level: int, msg: str, exc_info: bool, fields: dict[str, Any]) -> None:
        self._logger.log(level, msg, extra={"fields": fields}, exc_info=exc_info)

    def debug(self, msg: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, msg, False, fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._emit(logging.INFO, msg, False, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._emit(logging.WARNING, msg, False, fields)

    def error(self, msg: str, *, exc_info: bool = False, **fields: Any) -> None:
        self._emit(logging.ERROR, msg, exc_info, fields)


def get_logger(name: str) -> EventLogger:
    return EventLogger(name)


def configure(level: int = logging.INFO, stream: Any = None) -> None:
    """Send ``kubenas.*`` logs to ``stream`` (stderr by default) in key=value form."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger("kubenas")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False

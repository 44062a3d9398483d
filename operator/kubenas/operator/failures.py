"""How a reconcile pass fails: for good (the experiment ends Failed) or for now (it is tried again).

kopf names the same split TemporaryError and PermanentError; here the types carry what the status and
the log need, and the API server's answers that no retry can change are listed once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kubenas.core.errors import KubenasError

#: answers of the API server that no retry can change (a bad request, forbidden, invalid)
PERMANENT_STATUSES = frozenset({400, 403, 422})


class Fatal(KubenasError):
    """The experiment cannot go on: it ends Failed with this reason."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


class Requeue(KubenasError):
    """Nothing is wrong, but the pass cannot finish yet (an old object is still being deleted)."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        self.delay = delay
        super().__init__(message)


class ExperimentLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Every line names its namespace and experiment, and keeps the call's own ``extra`` fields too
    (the standard adapter replaces them)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def owned_by(body: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (body.get("metadata") or {}).get("ownerReferences") or [])

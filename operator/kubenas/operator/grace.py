"""When to look up what a waiting pod or Job may lack: past a grace period, at most every half of it.

A missing LocalQueue, a refused pod or a missing claim shows only as waiting; the operator looks the
cause up once the wait has lasted longer than a normal start (a queue or a claim may be applied just
after the experiment), and then no more than every half grace period while the wait goes on, asking
to be woken when the next lookup is due (nothing else may wake an experiment whose pods just wait).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kubenas.operator.failures import ExperimentLog
from kubenas.operator.kube import ApiError, KubeApi, NotFound

#: how long a Job may go without a pod, or a pod without starting, before the cause is looked up
GRACE_S = 30.0


class Gate:
    """One lookup's timing: :meth:`due` says whether to look now, given how long the wait has lasted."""

    def __init__(self, wake_later: Callable[[float], None], grace: float = GRACE_S) -> None:
        self.wake_later = wake_later
        self.grace = grace
        self.checked = -grace  # monotonic time of the last lookup

    def due(self, waited: float) -> bool:
        """True when the wait has passed the grace and the last lookup is half a grace old (recorded as
        made now); otherwise a wake-up is asked for when it will be due."""
        if waited < self.grace:
            self.wake_later(self.grace - waited + 0.5)
            return False
        if time.monotonic() - self.checked < self.grace / 2:
            return False
        self.checked = time.monotonic()
        self.wake_later(self.grace / 2 + 0.5)
        return True


async def missing(api: KubeApi, api_version: str, kind: str, namespace: str, name: str, log: ExperimentLog) -> bool:
    """Whether the object is known not to exist; an object the operator may not read counts as present
    (a warning is logged, and whatever waits for it just waits, as before)."""
    try:
        await api.get(api_version, kind, namespace, name)
    except NotFound:
        return True
    except ApiError as exc:
        log.warning(f"cannot read the {kind}", extra={"object": name, "error": repr(exc)})
    return False

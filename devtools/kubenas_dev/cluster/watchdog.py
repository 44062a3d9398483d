"""Tear a cluster down when the process that owns it dies.

A pytest run that is killed (Ctrl-C twice, a CI timeout, SIGKILL) never runs its fixture teardown;
without this, etcd, the API server and every pod's process would outlive it. The watchdog is one
small process per cluster that polls the owner's PID and runs the normal ``down`` when it is gone.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from kubenas_dev.cluster import log as devlog
from kubenas_dev.cluster.errors import ClusterNotRunningError
from kubenas_dev.cluster.state import pid_alive

POLL_SECONDS = 1.0


def watch(cluster_dir: Path, owner_pid: int) -> int:
    from kubenas_dev.cluster.launcher import Cluster

    logger = devlog.get_logger("kubenas_dev.cluster.watchdog")
    while pid_alive(owner_pid):
        if not cluster_dir.exists():
            return 0  # stopped normally
        time.sleep(POLL_SECONDS)
    logger.warning("owner gone; stopping the cluster", owner=owner_pid, dir=str(cluster_dir))
    with contextlib.suppress(ClusterNotRunningError):
        Cluster.attach(cluster_dir).stop(remove=True)
    return 0


if __name__ == "__main__":
    devlog.configure()
    sys.exit(watch(Path(sys.argv[1]), int(sys.argv[2])))

"""Loopback pod IPs: 127.<block>.<x>.<y>, one /16 block per cluster.

Linux routes all of 127.0.0.0/8 to the loopback device, so a process can bind any of those
addresses without configuration and two pods can both listen on port 8080. The block is held with
an flock for the agent's lifetime, so two clusters on one machine never hand out the same IP; IPs
are not reused until the block wraps, so a stale EndpointSlice never points at a newer pod.
"""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path
from typing import IO

from kubenas_dev.cluster.errors import DevClusterError

FIRST_BLOCK, LAST_BLOCK = 20, 250  # 127.0.x.x and 127.1.x.x stay free for everything else


class IPAllocator:
    def __init__(self, lock_dir: Path) -> None:
        lock_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file: IO[str] | None = None
        self.block = self._claim_block(lock_dir)
        self._next = 0
        self._in_use: set[str] = set()
        self._mutex = threading.Lock()

    def _claim_block(self, lock_dir: Path) -> int:
        for block in range(FIRST_BLOCK, LAST_BLOCK + 1):
            fh = (lock_dir / f"ipblock-{block}.lock").open("w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            self._lock_file = fh  # held open (and locked) until the process exits
            return block
        raise DevClusterError(f"no free 127.N.0.0/16 pod-IP block in {lock_dir}")

    def allocate(self) -> str:
        with self._mutex:
            for _ in range(255 * 254):
                x, y = divmod(self._next, 254)
                self._next = (self._next + 1) % (255 * 254)
                ip = f"127.{self.block}.{x + 1}.{y + 1}"
                if ip not in self._in_use:
                    self._in_use.add(ip)
                    return ip
        raise DevClusterError(f"pod-IP block 127.{self.block}.0.0/16 exhausted")

    def release(self, ip: str) -> None:
        with self._mutex:
            self._in_use.discard(ip)

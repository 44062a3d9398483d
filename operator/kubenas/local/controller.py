"""The experiment controller's app served on loopback, in a thread of the local run.

Local mode holds its search in process, but the ENAS supernet trainer is a separate process that
pulls paths over HTTP, as it does from the controller pod on Kubernetes. Serving the controller's own
application (:func:`kubenas.controller.server.make_app`) here keeps one implementation of the path
channel: the same endpoints, the same credential, the same policy.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
from types import TracebackType

from aiohttp import web

from kubenas.controller.server import make_app


class LoopbackController:
    """``with LoopbackController(name) as c:`` the controller at ``c.url`` (token ``c.token``) within the block."""

    def __init__(self, experiment: str = "") -> None:
        self.experiment = experiment
        self.token = secrets.token_hex(16)
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> LoopbackController:
        self._thread = threading.Thread(target=self._serve, name="loopback-controller", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to __enter__ when it happens before the server is up
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(make_app(self.token, self.experiment), access_log=None)
        await runner.setup()
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))  # a free port, known before the server starts
            await web.SockSite(runner, sock).start()
            self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

"""The one-shot evaluator pod: HTTP in front of ``<oneShot.command> evaluate`` (phase 2 on Kubernetes).

The evaluate command loads the supernet once and answers one JSON line on stdout per request line on
stdin (``kubenas_trainer.oneshot``); local mode talks to it over a pipe. In the evaluator pod this
server owns that process and carries the operator's requests to it, one at a time:

- ``POST /evaluate`` ``{"index", "architecture"}`` → the command's answer ``{"index", "exitCode",
  "result"}``; ``exitCode`` null when the process died before answering (an attempt killed, which the
  operator's driver retries like a trial's). A dead process is started again on the next request.
- ``GET /health``: 200 once the supernet is loaded (the process answered a probe line without an
  architecture), 503 before: the pod's readiness, so the operator sends nothing to a loading pod.

An evaluate command that dies before it has ever loaded the supernet (a checkpoint it cannot read, a
wrong command) is not retried here: the server stops with exit code :data:`LOAD_FAILED_EXIT` (the
``on_load_failure`` hook), so the pod shows the failure as restarts and CrashLoopBackOff, with the
command's exit code and last stderr lines as its termination message (``--message-file``), and the
operator fails the experiment after a few (:func:`kubenas.operator.oneshot.evaluator_failure`)
instead of waiting for a ready pod for ever.
A command that dies after it loaded is started again on the next request, as before.

POSTs need the experiment's controller token. The server keeps no state of its own: the operator
holds the record, so the pod can be replaced at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

log = logging.getLogger("kubenas.controller.evaluator")

#: the probe line: no architecture, so the command answers at once, once it has loaded the supernet
PROBE = json.dumps({"index": None}) + "\n"
#: how long one candidate may take (recalibration and validation of one path)
ANSWER_TIMEOUT_S = 600.0
#: the server's exit code when the evaluate command died before it loaded the supernet
LOAD_FAILED_EXIT = 1
#: how many of the command's last stderr lines a load failure's message quotes
STDERR_LINES = 8


class EvaluatorProcess:
    """The evaluate command as a child process, started on demand and again after it died."""

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)
        self.proc: asyncio.subprocess.Process | None = None
        self.lock = asyncio.Lock()
        self.loaded = False
        self.starts = 0
        #: the exit code of a command that died while loading (None: it loaded, or has not ended)
        self.load_exit: int | None = None
        #: the last lines the command wrote to stderr (its error, when it dies)
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)

    async def _line(self, proc: asyncio.subprocess.Process, text: str) -> dict[str, Any] | None:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(text.encode())
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), ANSWER_TIMEOUT_S)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            line = b""
        if not line:
            await self._stop(proc)
            return None
        answer = json.loads(line)
        return answer if isinstance(answer, dict) else None

    async def _started(self) -> asyncio.subprocess.Process | None:
        if self.proc is not None and self.proc.returncode is None:
            return self.proc
        self.loaded = False
        self.starts += 1
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        forwarding = asyncio.get_running_loop().create_task(self._forward(self.proc))
        log.info("evaluate command started", extra={"pid": self.proc.pid, "starts": self.starts})
        if await self._line(self.proc, PROBE) is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(forwarding, 5.0)  # its last words, for the failure message
            self.load_exit = self.proc.returncode
            log.warning("evaluate command exited while loading", extra={"returncode": self.proc.returncode})
            return None
        self.load_exit = None
        self.loaded = True
        log.info("supernet loaded", extra={"pid": self.proc.pid})
        return self.proc

    async def _forward(self, proc: asyncio.subprocess.Process) -> None:
        """Copy the command's stderr to ours (the pod's log), keeping its last lines."""
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            sys.stderr.buffer.write(line)
            sys.stderr.buffer.flush()
            self.stderr_tail.append(line.decode(errors="replace").rstrip())

    def load_failure(self) -> str:
        """What to say when the command died while loading: its exit code and the end of its stderr."""
        tail = "\n".join(self.stderr_tail).strip()
        said = f": {tail}" if tail else " (it wrote nothing to stderr)"
        return f"the evaluate command exited with code {self.load_exit} before it loaded the supernet{said}"

    async def load(self) -> bool:
        async with self.lock:
            return await self._started() is not None

    async def evaluate(self, index: int, architecture: Any) -> dict[str, Any]:
        async with self.lock:
            started = time.monotonic()
            proc = await self._started()
            answer = None
            if proc is not None:
                answer = await self._line(proc, json.dumps({"index": index, "architecture": architecture}) + "\n")
            answer = answer or {"index": index, "exitCode": None, "result": None}
            seconds = round(time.monotonic() - started, 3)
            log.info("candidate scored", extra={"index": index, "exitCode": answer.get("exitCode"), "seconds": seconds})
            return answer

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        self.loaded = False
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(Exception):
            await proc.wait()

    async def close(self) -> None:
        if self.proc is not None:
            await self._stop(self.proc)


PROCESS_KEY = web.AppKey("process", EvaluatorProcess)
LOADING_KEY = web.AppKey("loading", asyncio.Task)


async def health(request: web.Request) -> web.Response:
    process = request.app[PROCESS_KEY]
    body = {"loaded": process.loaded, "starts": process.starts, "loadExit": process.load_exit}
    return web.json_response(body, status=200 if process.loaded else 503)


async def evaluate(request: web.Request) -> web.Response:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    index = data.get("index") if isinstance(data, dict) else None
    if not isinstance(index, int) or isinstance(index, bool):
        return web.json_response({"error": {"code": "BadRequest", "message": "index must be an integer"}}, status=400)
    answer = await request.app[PROCESS_KEY].evaluate(index, data.get("architecture"))
    return web.json_response(answer)


def make_app(
    token: str, command: Sequence[str], on_load_failure: Callable[[str], None] | None = None
) -> web.Application:
    """The evaluator's application: ``token`` guards ``/evaluate``; ``command`` is the evaluate command;
    ``on_load_failure`` is called with the failure's message (exit code, the command's last stderr
    lines) if it dies before the supernet is loaded (the command line writes it as the termination
    message and stops the server; without the hook the next request starts the command again)."""
    if not token:
        raise ValueError("the evaluator needs a non-empty token")
    if not command:
        raise ValueError("the evaluator needs the evaluate command")
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def authorize(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "POST" and not hmac.compare_digest(
            request.headers.get("Authorization", "").encode(), expected
        ):
            return web.json_response(
                {"error": {"code": "Unauthorized", "message": "missing or wrong bearer token"}}, status=401
            )
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[authorize])
    app[PROCESS_KEY] = EvaluatorProcess(command)
    app.router.add_get("/health", health)
    app.router.add_post("/evaluate", evaluate)

    async def _load_or_fail() -> None:
        process = app[PROCESS_KEY]
        if not await process.load() and on_load_failure is not None:
            log.error("evaluate command died before it loaded the supernet; stopping")
            on_load_failure(process.load_failure())

    async def _load(app: web.Application) -> None:
        # in the background: the server answers /health (503) while the supernet loads
        app[LOADING_KEY] = asyncio.get_running_loop().create_task(_load_or_fail())

    async def _close(app: web.Application) -> None:
        app[LOADING_KEY].cancel()
        await app[PROCESS_KEY].close()

    app.on_startup.append(_load)
    app.on_cleanup.append(_close)
    return app

"""The controller's HTTP server (aiohttp): the protocol of ``kubenas.controller.protocol``.

Search calls run one at a time on a single worker thread. That serializes them, as the Search
requires, and keeps the event loop free to answer ``/health`` while a long replay (thousands of
trials, an LSTM policy) is under way.

The push channel (``/progress`` from trainer pods, ``/points`` for the operator) runs on the event
loop itself: it never touches the Search (see :mod:`kubenas.controller.progress`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kubenas.controller import paths, progress, protocol
from kubenas.controller.service import ControllerError, ControllerService

log = logging.getLogger("kubenas.controller")

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControllerMetrics:
    """The controller's own Prometheus series, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kubenas_controller_requests_total",
            "Requests served, by endpoint and HTTP status code.",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "kubenas_controller_request_duration_seconds",
            "Time to serve a request, by endpoint.",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
            registry=self.registry,
        )
        self.asked = Gauge("kubenas_controller_trials_asked", "Candidates asked so far.", registry=self.registry)
        self.told = Gauge("kubenas_controller_trials_told", "Results told so far.", registry=self.registry)
        self.replays = Counter(
            "kubenas_controller_replays_total", "Rebuilds of the search from history.", registry=self.registry
        )
        self.points = Counter(
            "kubenas_controller_progress_points_total",
            "Epoch reports posted by trainer pods, by outcome (kept, ignored: not past the trial's last step).",
            ["outcome"],
            registry=self.registry,
        )


class SerialRunner:
    """Runs the Search's calls one after another on one thread, off the event loop."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search")

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class PointsArrived:
    """Wakes the readers waiting in ``/points`` when a point arrives."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.closing = False

    def notify(self) -> None:
        self._event.set()
        if not self.closing:
            self._event = asyncio.Event()  # waiters hold the one just set; later ones wait for the next point

    def close(self) -> None:
        """The server stops: every reader answers now, so that no long-poll holds the shutdown up."""
        self.closing = True
        self.notify()

    async def wait(self, seconds: float) -> None:
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)


SERVICE_KEY = web.AppKey("service", ControllerService)
RUNNER_KEY = web.AppKey("runner", SerialRunner)
METRICS_KEY = web.AppKey("metrics", ControllerMetrics)
STORE_KEY = web.AppKey("progress", progress.ProgressStore)
ARRIVED_KEY = web.AppKey("arrived", PointsArrived)
TOKEN_KEY = web.AppKey("token", str)
PATHS_KEY = web.AppKey("paths", paths.PathService)


def _error(code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=protocol.HTTP_STATUS[code])


def _state(request: web.Request) -> dict[str, Any]:
    service = request.app[SERVICE_KEY]
    state = service.state()
    metrics = request.app[METRICS_KEY]
    metrics.asked.set(state.asked)
    metrics.told.set(state.told)
    return state.to_json()


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ControllerError(protocol.BAD_REQUEST, "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ControllerError(protocol.BAD_REQUEST, "the body must be a JSON object")
    return data


def _int(data: dict[str, Any], key: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ControllerError(protocol.BAD_REQUEST, f"{key} must be an integer")
    return value


async def health(request: web.Request) -> web.Response:
    return web.json_response({"state": _state(request)})


async def metrics(request: web.Request) -> web.Response:
    _state(request)
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def replay(request: web.Request) -> web.Response:
    data = await _body(request)
    trials = data.get("trials") or []
    if not isinstance(trials, list) or not isinstance(data.get("spec"), dict):
        raise ControllerError(protocol.BAD_REQUEST, "replay needs spec (object) and trials (list)")
    service = request.app[SERVICE_KEY]
    experiment = str(data.get("experiment") or service.experiment)
    started = time.perf_counter()
    state = await request.app[RUNNER_KEY].run(lambda: service.replay(experiment, data["spec"], trials))
    request.app[METRICS_KEY].replays.inc()
    log.info(
        "replayed history",
        extra={
            "experiment": experiment,
            "trials": state.asked,
            "told": state.told,
            "seconds": round(time.perf_counter() - started, 4),
        },
    )
    return web.json_response({"state": _state(request)})


async def ask(request: web.Request) -> web.Response:
    data = await _body(request)
    index, count = _int(data, "index"), _int(data, "count", 1)
    service = request.app[SERVICE_KEY]
    candidates = await request.app[RUNNER_KEY].run(lambda: service.ask(index, count))
    return web.json_response({"candidates": candidates, "state": _state(request)})


async def tell(request: web.Request) -> web.Response:
    data = await _body(request)
    index = _int(data, "index")
    status = data.get("status")
    if not isinstance(status, dict):
        raise ControllerError(protocol.BAD_REQUEST, "tell needs status (object)")
    service = request.app[SERVICE_KEY]
    told = await request.app[RUNNER_KEY].run(lambda: service.tell(index, status))
    return web.json_response({"told": told, "state": _state(request)})


async def report_progress(request: web.Request) -> web.Response:
    """A trainer's epoch: accepted only with the trial's own credential (``progress.trial_token``)."""
    data = await _body(request)
    try:
        trial, step, metrics = progress.parse_point(data)
    except progress.BadPoint as exc:
        raise ControllerError(protocol.BAD_REQUEST, str(exc)) from None
    given = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not progress.token_matches(request.app[TOKEN_KEY], trial, given):
        return _error(protocol.UNAUTHORIZED, f"missing or wrong progress token for trial {trial}")
    point = request.app[STORE_KEY].add(trial, step, metrics)
    request.app[METRICS_KEY].points.labels("kept" if point else "ignored").inc()
    if point is not None:
        request.app[ARRIVED_KEY].notify()
    return web.json_response({"kept": point is not None})


async def points(request: web.Request) -> web.Response:
    """The operator's read: points after ``after`` of this ``instance`` (all of them for another
    instance: the controller restarted), waiting up to ``wait`` seconds for the first one."""
    data = await _body(request)
    after, wait = _int(data, "after", 0), data.get("wait", 0)
    if not isinstance(wait, (int, float)) or isinstance(wait, bool) or wait < 0:
        raise ControllerError(protocol.BAD_REQUEST, "wait must be a number of seconds >= 0")
    service, store = request.app[SERVICE_KEY], request.app[STORE_KEY]
    if data.get("instance") != service.instance:
        after = 0
    found, dropped = store.since(after)
    if not found and wait:
        await request.app[ARRIVED_KEY].wait(min(float(wait), progress.MAX_WAIT_SECONDS))
        found, dropped = store.since(after)
    body = {"points": [p.to_json() for p in found], "dropped": dropped, "state": _state(request)}
    return web.json_response(body)


async def _path_request(request: web.Request) -> tuple[dict[str, Any], str]:
    """The body and trial of a path-channel request, once its credential (``paths.paths_token``) checks out."""
    data = await _body(request)
    trial = paths.trial_of(data)
    given = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not paths.authorized(request.app[TOKEN_KEY], trial, given):
        raise ControllerError(protocol.UNAUTHORIZED, f"missing or wrong path token for trial {trial}")
    return data, trial


async def replay_paths(request: web.Request) -> web.Response:
    """The supernet trainer (re)builds the ENAS path policy from its config and its record of paths."""
    data, trial = await _path_request(request)
    config, record = data.get("config"), data.get("paths") or []
    if not isinstance(config, dict) or not isinstance(record, list):
        raise ControllerError(protocol.BAD_REQUEST, "a path replay needs config (object) and paths (list)")
    service = request.app[PATHS_KEY]
    state = await request.app[RUNNER_KEY].run(lambda: service.replay(trial, config, record))
    log.info("replayed paths", extra={"trial": trial, "paths": state.drawn, "told": state.told})
    return web.json_response({"state": state.to_json()})


async def draw_paths(request: web.Request) -> web.Response:
    data, trial = await _path_request(request)
    index, count = _int(data, "index"), _int(data, "count", 1)
    service = request.app[PATHS_KEY]
    drawn = await request.app[RUNNER_KEY].run(lambda: service.draw(trial, index, count))
    return web.json_response({"paths": drawn, "state": service.state().to_json()})


async def reward_paths(request: web.Request) -> web.Response:
    data, trial = await _path_request(request)
    rewards = paths.parse_rewards(data)
    service = request.app[PATHS_KEY]
    told = await request.app[RUNNER_KEY].run(lambda: service.reward(trial, rewards))
    return web.json_response({"paths": told, "state": service.state().to_json()})


#: POSTs that carry their own credential instead of the controller token
OWN_CREDENTIAL = frozenset({progress.PROGRESS_PATH, *paths.ENDPOINTS})


def _middleware(token: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = request.path if request.path in ENDPOINTS else "other"
        started = time.perf_counter()
        status = 500
        try:
            if (
                request.method == "POST"
                and request.path not in OWN_CREDENTIAL
                and not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected)
            ):
                response: web.StreamResponse = _error(protocol.UNAUTHORIZED, "missing or wrong bearer token")
            else:
                try:
                    response = await handler(request)
                except ControllerError as exc:
                    log.warning("refused", extra={"endpoint": endpoint, "code": exc.code, "detail": exc.message})
                    response = _error(exc.code, exc.message)
            status = response.status
            return response
        finally:
            m = request.app[METRICS_KEY]
            m.requests.labels(endpoint, str(status)).inc()
            m.duration.labels(endpoint).observe(time.perf_counter() - started)

    return middleware


ENDPOINTS = (
    "/health",
    "/metrics",
    "/replay",
    "/ask",
    "/tell",
    progress.PROGRESS_PATH,
    progress.POINTS_PATH,
    *paths.ENDPOINTS,
)


def make_app(token: str, experiment: str = "") -> web.Application:
    """The controller's aiohttp application; ``token`` guards every POST."""
    if not token:
        raise ValueError("the controller needs a non-empty token")
    app = web.Application(middlewares=[_middleware(token)])
    app[SERVICE_KEY] = ControllerService(experiment)
    app[RUNNER_KEY] = SerialRunner()
    app[METRICS_KEY] = ControllerMetrics()
    app[STORE_KEY] = progress.ProgressStore()
    app[ARRIVED_KEY] = PointsArrived()
    app[TOKEN_KEY] = token
    app[PATHS_KEY] = paths.PathService(app[SERVICE_KEY].instance)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/replay", replay)
    app.router.add_post("/ask", ask)
    app.router.add_post("/tell", tell)
    app.router.add_post(progress.PROGRESS_PATH, report_progress)
    app.router.add_post(progress.POINTS_PATH, points)
    app.router.add_post(paths.REPLAY_PATH, replay_paths)
    app.router.add_post(paths.PATHS_PATH, draw_paths)
    app.router.add_post(paths.REWARDS_PATH, reward_paths)

    async def _close(app: web.Application) -> None:
        app[RUNNER_KEY].close()

    async def _shutdown(app: web.Application) -> None:
        app[ARRIVED_KEY].close()

    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_close)
    return app

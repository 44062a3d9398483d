"""The agent's loopback HTTP endpoint for fault injection (client: ``kubenas_dev.cluster.faults``)."""

from __future__ import annotations

import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from kubenas_dev.cluster.agent.heartbeat import NodeHeartbeat
from kubenas_dev.cluster.errors import NodeNotFoundError, PodNotFoundError
from kubenas_dev.cluster.faults import TOKEN_HEADER
from kubenas_dev.cluster.log import get_logger

log = get_logger("kubenas_dev.cluster.agent.faults")


class FaultTarget(Protocol):
    """What the fault API acts on: the node agent. A protocol, so this module does not import the agent
    (which imports this module to start the server)."""

    heartbeat: NodeHeartbeat

    def pod_summaries(self) -> list[dict[str, Any]]: ...

    def kill(
        self, namespace: str, name: str, exit_code: int, *, container: str | None = None, reason: str | None = None
    ) -> dict[str, Any]: ...

    def evict(self, namespace: str, name: str, message: str | None = None) -> dict[str, Any]: ...


def make_handler(agent: FaultTarget, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("fault api", request=format % args)

        def _reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if hmac.compare_digest(self.headers.get(TOKEN_HEADER, ""), token):
                return True
            self._reply(401, {"error": "bad token"})
            return False

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._reply(200, {"ok": True})
            elif self.path == "/pods" and self._authorized():
                self._reply(200, agent.pod_summaries())
            elif self.path != "/pods":
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            if not self._authorized():
                return
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            try:
                if self.path == "/faults/kill":
                    result = agent.kill(
                        body["namespace"],
                        body["pod"],
                        int(body.get("exit_code", 137)),
                        container=body.get("container"),
                        reason=body.get("reason"),
                    )
                elif self.path == "/faults/evict":
                    result = agent.evict(body["namespace"], body["pod"], body.get("message"))
                elif self.path == "/faults/node-ready":
                    agent.heartbeat.set_ready(body["node"], bool(body["ready"]))
                    result = {"node": body["node"], "ready": bool(body["ready"])}
                else:
                    self._reply(404, {"error": "not found"})
                    return
            except PodNotFoundError as err:
                self._reply(404, {"pod": err.name, "namespace": err.namespace})
                return
            except NodeNotFoundError as err:
                self._reply(404, {"node": err.node})
                return
            except (KeyError, ValueError) as err:
                self._reply(400, {"error": str(err)})
                return
            log.info("fault injected", path=self.path, body=body)
            self._reply(200, result)

    return Handler


def serve(agent: FaultTarget, port: int, token: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(agent, token))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="fault-api", daemon=True).start()
    return server

"""A small asynchronous Kubernetes API client for the operator's own writes (aiohttp).

kopf watches; this client creates, patches, deletes and reads. It is deliberately small: the
handful of kinds the operator touches, JSON merge patches, typed errors, one keep-alive connection
pool, and a count of every request by verb and resource (which is how the benchmark measures API
writes per trial). Credentials come from the kubeconfig or the in-cluster service account, exactly
as ``kubernetes.config`` reads them.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from kubenas.api.v1alpha1 import API_VERSION
from kubenas.core.errors import KubenasError

FIELD_MANAGER = "kubenas-operator"

#: Kueue's API version the operator reads (LocalQueues), served by every Kueue release since 0.3
KUEUE_API_VERSION = "kueue.x-k8s.io/v1beta1"

#: (apiVersion, kind) → plural resource name, for every kind the operator writes or reads.
RESOURCES: dict[tuple[str, str], str] = {
    ("v1", "Secret"): "secrets",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("apps/v1", "Deployment"): "deployments",
    ("batch/v1", "Job"): "jobs",
    ("discovery.k8s.io/v1", "EndpointSlice"): "endpointslices",
    ("coordination.k8s.io/v1", "Lease"): "leases",
    (KUEUE_API_VERSION, "LocalQueue"): "localqueues",
    (API_VERSION, "Trial"): "trials",
    (API_VERSION, "SearchExperiment"): "searchexperiments",
}

RequestObserver = Callable[[str, str, int, float], None]  # (verb, resource, status code, seconds)


class ApiError(KubenasError):
    """The API server refused a request; ``status`` and ``reason`` are the server's."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}")

    @property
    def temporary(self) -> bool:
        """Worth retrying: throttled, timed out or the server is unwell."""
        return self.status in (429, 500, 502, 503, 504) or self.status == 0


class NotFound(ApiError):
    pass


class AlreadyExists(ApiError):
    pass


class Conflict(ApiError):
    pass


class Invalid(ApiError):
    """422: the object does not pass validation (the message names the field)."""


def _error(status: int, body: str) -> ApiError:
    try:
        data = json.loads(body)
        reason, message = str(data.get("reason", "")), str(data.get("message", body))
    except (json.JSONDecodeError, AttributeError):
        reason, message = "", body
    if status == 404:
        return NotFound(status, reason or "NotFound", message)
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists(status, reason, message)
    if status == 409:
        return Conflict(status, reason or "Conflict", message)
    if status == 422:
        return Invalid(status, reason or "Invalid", message)
    return ApiError(status, reason or "Error", message)


def client_configuration(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """The ``kubernetes`` client's reading of a kubeconfig, or of the in-cluster service account.

    The path is resolved here, not by the library's import-time default, so that a $KUBECONFIG set
    by the command line after the library was imported still counts.
    """
    from kubernetes import client, config

    path = Path(os.path.expanduser(kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"))
    cfg = client.Configuration()
    if path.exists():
        config.load_kube_config(config_file=str(path), context=context, client_configuration=cfg)
    else:
        config.load_incluster_config(client_configuration=cfg)
    return cfg


def bearer(cfg: Any) -> str | None:
    """The Authorization header value of a client configuration (newer clients keep it as BearerToken)."""
    return cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization") or None


def resource_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    plural = RESOURCES[(api_version, kind)]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return f"{path}/{name}" if name else path


class KubeApi:
    """Async API client. Create one per process; close it on shutdown."""

    def __init__(
        self,
        server: str,
        *,
        ssl_context: ssl.SSLContext | bool | None = None,
        auth: Callable[[], dict[str, str]] | None = None,
        observer: RequestObserver | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.server = server.rstrip("/")
        self._ssl = ssl_context
        self._auth = auth or (dict)
        self.observer = observer
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(cls, kubeconfig: str | None = None, context: str | None = None, **kw: Any) -> KubeApi:
        """From a kubeconfig (or $KUBECONFIG, ~/.kube/config), else the in-cluster service account."""
        cfg = client_configuration(kubeconfig, context)
        ctx: ssl.SSLContext | bool
        if cfg.verify_ssl:
            ctx = (
                ssl.create_default_context(cafile=cfg.ssl_ca_cert) if cfg.ssl_ca_cert else ssl.create_default_context()
            )
        else:
            ctx = False
        if cfg.cert_file and isinstance(ctx, ssl.SSLContext):
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)

        def auth() -> dict[str, str]:
            if cfg.refresh_api_key_hook is not None:
                cfg.refresh_api_key_hook(cfg)
            token = bearer(cfg)
            return {"Authorization": token} if token else {}

        return cls(cfg.host, ssl_context=ctx, auth=auth, **kw)

    async def _session_(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True, limit=64)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        resource: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API call; returns the decoded JSON or raises ApiError (status 0: no connection)."""
        session = await self._session_()
        url = self.server + path + (("?" + urlencode(params)) if params else "")
        headers = {"Accept": "application/json", **self._auth()}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        status = 0
        started = time.perf_counter()
        try:
            async with session.request(method, url, data=data, headers=headers) as response:
                status = response.status
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(0, "Unreachable", f"{method} {path}: {exc!r}") from None
        finally:
            if self.observer is not None:
                self.observer(method.lower(), resource, status, time.perf_counter() - started)
        if status >= 400:
            raise _error(status, text)
        return json.loads(text) if text else None

    # -- verbs -----------------------------------------------------------------------------
    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``obj`` in its namespace; AlreadyExists if the name is taken."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        path = resource_path(api_version, kind, obj["metadata"].get("namespace"))
        return await self.request(
            "POST", path, resource=RESOURCES[(api_version, kind)], body=obj, params={"fieldManager": FIELD_MANAGER}
        )

    async def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT ``obj`` whole; with ``metadata.resourceVersion`` set, Conflict if it changed since it was read."""
        api_version, kind, meta = obj["apiVersion"], obj["kind"], obj["metadata"]
        path = resource_path(api_version, kind, meta.get("namespace"), meta["name"])
        return await self.request(
            "PUT", path, resource=RESOURCES[(api_version, kind)], body=obj, params={"fieldManager": FIELD_MANAGER}
        )

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        path = resource_path(api_version, kind, namespace, name)
        return await self.request("GET", path, resource=RESOURCES[(api_version, kind)])

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        label_selector: Mapping[str, str] | None = None,
        field_selector: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        params = {}
        if label_selector:
            params["labelSelector"] = ",".join(f"{k}={v}" for k, v in label_selector.items())
        if field_selector:
            params["fieldSelector"] = ",".join(f"{k}={v}" for k, v in field_selector.items())
        path = resource_path(api_version, kind, namespace)
        data = await self.request("GET", path, resource=RESOURCES[(api_version, kind)], params=params or None)
        return list(data.get("items") or [])

    async def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch, of the object or of a subresource such as ``status``."""
        path = resource_path(api_version, kind, namespace, name) + (f"/{subresource}" if subresource else "")
        return await self.request(
            "PATCH",
            path,
            resource=RESOURCES[(api_version, kind)] + (f"/{subresource}" if subresource else ""),
            body=patch,
            params={"fieldManager": FIELD_MANAGER},
            content_type="application/merge-patch+json",
        )

    async def delete(
        self, api_version: str, kind: str, namespace: str, name: str, propagation: str = "Background"
    ) -> None:
        path = resource_path(api_version, kind, namespace, name)
        with contextlib.suppress(NotFound):  # already gone is what we wanted
            await self.request(
                "DELETE",
                path,
                resource=RESOURCES[(api_version, kind)],
                body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation},
            )

    async def event(
        self,
        involved: Mapping[str, Any],
        reason: str,
        message: str,
        type_: str = "Normal",
        component: str = "kubenas-operator",
        instance: str = "",
    ) -> None:
        """Post a core/v1 Event about ``involved`` (an object reference with namespace and uid)."""
        now = datetime.now(UTC).isoformat()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"namespace": involved["namespace"], "generateName": f"{involved['name']}."},
            "involvedObject": dict(involved),
            "type": type_,
            "reason": reason,
            "message": message[:1000],
            "action": reason,
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": instance or component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": now,
            "count": 1,
        }
        path = resource_path("v1", "Event", involved["namespace"])
        await self.request("POST", path, resource="events", body=body)


def is_write(verb: str) -> bool:
    return verb in ("post", "put", "patch", "delete")

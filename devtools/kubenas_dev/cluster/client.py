"""Kubernetes API clients that can only talk to the loopback API server.

The python client picks up ``HTTPS_PROXY`` from the environment; a CI runner with a proxy set would
send test traffic off the machine. Every client the cluster code builds goes through here, with
proxies switched off and the server checked to be on 127.0.0.0/8.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlparse

from kubernetes import client, config

from kubenas_dev.cluster.errors import DevClusterError


def assert_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise DevClusterError(f"refusing to talk to {url}: the development cluster lives on loopback only")


def api_client(kubeconfig: Path | str, qps_pool: int = 32) -> client.ApiClient:
    """An ``ApiClient`` for ``kubeconfig``'s current context, proxies off, loopback enforced."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    assert_loopback(cfg.host)
    cfg.proxy = None
    cfg.no_proxy = "*"
    cfg.connection_pool_maxsize = qps_pool
    return client.ApiClient(cfg)

"""Typed errors of the development cluster, each carrying the object it concerns.

Callers (the CLI, the pytest plugin) turn them into a clear failure message; tests must fail, never
skip, when the cluster cannot be built or started.
"""

from __future__ import annotations


class DevClusterError(Exception):
    """Base class: something about the development cluster went wrong."""


class BuildError(DevClusterError):
    """A build step failed; ``step`` names it (``etcd``, ``kubernetes: compile``, ...)."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"build step {step!r}: {message}")
        self.step = step
        self.message = message


class NotBuiltError(DevClusterError):
    """The binaries for a version set are not in the cache and building was not allowed."""

    def __init__(self, home: str) -> None:
        super().__init__(f"control-plane binaries not built under {home}; run `kubenas cluster build`")
        self.home = home


class ComponentError(DevClusterError):
    """A control-plane component (or the node agent) failed to start or become ready."""

    def __init__(self, component: str, message: str, log_path: str | None = None) -> None:
        tail = ""
        if log_path:
            try:
                with open(log_path, errors="replace") as fh:
                    tail = "\n--- last lines of " + log_path + " ---\n" + "".join(fh.readlines()[-30:])
            except OSError:
                pass
        super().__init__(f"{component}: {message}{tail}")
        self.component = component
        self.log_path = log_path


class ClusterNotRunningError(DevClusterError):
    """No cluster state was found in ``cluster_dir``."""

    def __init__(self, cluster_dir: str) -> None:
        super().__init__(f"no running cluster in {cluster_dir}")
        self.cluster_dir = cluster_dir


class PodNotFoundError(DevClusterError):
    """The node agent runs no pod ``namespace/name`` (a fault was aimed at nothing)."""

    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(f"pod {namespace}/{name} is not running on any agent node")
        self.namespace = namespace
        self.name = name


class NodeNotFoundError(DevClusterError):
    """The node agent manages no node called ``node``."""

    def __init__(self, node: str) -> None:
        super().__init__(f"node {node} is not managed by this agent")
        self.node = node

"""The agent's configuration, written by the launcher as JSON next to the agent's pod directories."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kubenas_dev.cluster.nodes import NodeSpec


@dataclass(frozen=True)
class AgentConfig:
    kubeconfig: str
    server: str
    ca_file: str
    state_dir: str
    fault_port: int
    fault_token: str
    nodes: list[NodeSpec]
    kubelet_version: str
    cluster_id: str
    ip_lock_dir: str
    # Crash-loop back-off: the kubelet starts at 10 s and caps at 300 s; tests cannot wait that long.
    backoff_initial: float = 1.0
    backoff_max: float = 20.0
    lease_seconds: int = 40
    lease_renew: float = 5.0
    status_refresh: float = 15.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pods_dir(self) -> Path:
        return Path(self.state_dir) / "pods"

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        raw = json.loads(path.read_text())
        raw["nodes"] = [NodeSpec(**n) for n in raw["nodes"]]
        return cls(**raw)

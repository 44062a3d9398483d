"""Which Nodes the agent registers, and with what capacity.

The defaults give the scheduler something real to decide: a CPU node and a node with two
``nvidia.com/gpu``; a pod asking for three GPUs fits nowhere.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cpu: str = "8"
    memory: str = "16Gi"
    pods: int = 110
    gpus: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)

    def capacity(self) -> dict[str, str]:
        cap = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods), "ephemeral-storage": "100Gi"}
        if self.gpus:
            cap["nvidia.com/gpu"] = str(self.gpus)
        return cap

    def all_labels(self) -> dict[str, str]:
        base = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubenas.io/devcluster-node": "true",
        }
        if self.gpus:
            base["nvidia.com/gpu.present"] = "true"
        return {**base, **self.labels}

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


DEFAULT_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("node-cpu-0", cpu="8", memory="16Gi"),
    NodeSpec("node-gpu-0", cpu="8", memory="32Gi", gpus=2),
)


def parse_node_option(text: str) -> NodeSpec:
    """``name[:cpu=4,memory=8Gi,gpus=2,pods=50]`` from the command line, or a JSON object."""
    if text.lstrip().startswith("{"):
        return NodeSpec(**json.loads(text))
    name, _, rest = text.partition(":")
    fields: dict[str, object] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        fields[key.strip()] = int(value) if key.strip() in ("gpus", "pods") else value.strip()
    return NodeSpec(name=name.strip(), **fields)  # type: ignore[arg-type]

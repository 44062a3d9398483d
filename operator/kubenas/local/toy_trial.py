"""A cheap stand-in trainer that honours the trial contract: a deterministic function of the architecture.

It lets examples and tests exercise the whole search loop in milliseconds. Every categorical value
gets a fixed score from a hash of (decision, value), plus an interaction between neighbouring
decisions; numeric decisions score by distance to a hidden optimum. The result lies in (0, 1) and is
reported as ``val_accuracy``, with ``latency_ms``, which grows with the score (a better architecture
is a slower one), so a search of both objectives has a front to find. Settings: ``sleep_s`` (pretend
to train), ``fail_on`` (a value that makes the trial exit with the bad-candidate code), ``noise``
(seeded per trial), ``epochs`` (report a learning curve of that many epochs rising to the final
value, sleeping ``epoch_s`` before each, so that stopping rules have something to judge). Epochs go
to stdout, and on Kubernetes also to the controller's push channel, through the trainer's own client.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import time
from typing import Any


def _unit(*parts: Any) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def score(architecture: dict[str, Any]) -> float:
    """A smooth-ish, deterministic landscape with one best architecture."""
    names = list(architecture)
    total = 0.0
    for i, name in enumerate(names):
        value = architecture[name]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            x = math.log10(value) if value > 0 else value
            opt = _unit(name, "opt") * 4 - 3
            total += math.exp(-((x - opt) ** 2))
        else:
            total += _unit(name, value) ** 2
        if i:
            total += 0.3 * _unit(names[i - 1], architecture[names[i - 1]], name, value)
    return total / (1.3 * max(1, len(names)))


def main() -> int:
    arch = json.loads(os.environ["KUBENAS_ARCHITECTURE"])
    settings = json.loads(os.environ.get("KUBENAS_SETTINGS") or "{}")
    seed = int(os.environ.get("KUBENAS_SEED", "0"))
    result_file = os.environ["KUBENAS_RESULT_FILE"]
    fail_on = settings.get("fail_on")
    if fail_on is not None and fail_on in arch.values():
        with open(result_file, "w") as fh:
            json.dump({"status": "bad_candidate", "message": f"{fail_on} is not allowed"}, fh)
        return 3
    time.sleep(float(settings.get("sleep_s", 0)))
    noise = float(settings.get("noise", 0.0)) * random.Random(seed).gauss(0, 1)
    acc = min(0.999, max(0.001, 0.5 + 0.49 * score(arch) + noise))
    epochs = max(1, int(settings.get("epochs", 1)))
    from kubenas_trainer.progress import ProgressChannel  # the same client as the real trainer's

    channel = ProgressChannel.from_env(os.environ)
    try:
        for epoch in range(1, epochs + 1):
            time.sleep(float(settings.get("epoch_s", 0)))
            value = acc * (1 - 0.5**epoch) / (1 - 0.5**epochs)  # rises to acc at the last epoch
            print(json.dumps({"event": "epoch", "epoch": epoch, "metrics": {"val_accuracy": value}}), flush=True)
            if channel is not None:
                channel.send(epoch, {"val_accuracy": value})
    finally:
        if channel is not None:
            channel.close()
    with open(result_file, "w") as fh:
        latency = round(2.0 + 8.0 * score(arch) + 2.0 * _unit(sorted(arch.items()), "latency"), 4)
        json.dump({"val_accuracy": acc, "params": 1000 * len(arch), "latency_ms": latency, "status": "completed"}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())

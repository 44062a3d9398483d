"""The results folder's journal: every ask and every tell, appended as JSON lines.

It is the local counterpart of the Trial objects on Kubernetes: enough to rebuild the strategy by
replay (``kubenas run --resume``), written with one ``write`` + ``flush`` + ``fsync`` per event so a
crash loses at most the line being written (a torn last line is ignored on reading).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kubenas.core.records import TrialRecord

JOURNAL = "journal.jsonl"


class Journal:
    """Append-only event log of one local experiment."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / JOURNAL
        self._fh = self.path.open("a", encoding="utf-8")

    def _write(self, event: dict[str, Any]) -> None:
        self._fh.write(json.dumps(event, sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def asked(self, rec: TrialRecord) -> None:
        self._write({"event": "ask", "index": rec.index, "name": rec.name, "architecture": rec.architecture})

    def told(self, rec: TrialRecord, elapsed_seconds: float) -> None:
        self._write(
            {
                "event": "tell",
                "index": rec.index,
                "phase": rec.phase,
                "reward": rec.reward,
                "metrics": dict(rec.metrics),
                "reason": rec.reason,
                "tellSequence": rec.tell_sequence,
                "asksBeforeTell": rec.asks_before_tell,
                "elapsedSeconds": elapsed_seconds,
            }
        )

    def close(self) -> None:
        self._fh.close()


def read_journal(directory: Path) -> tuple[list[TrialRecord], float]:
    """Trials recorded in ``directory`` (asked-but-untold ones come back Pending) and the elapsed time."""
    path = directory / JOURNAL
    trials: dict[int, TrialRecord] = {}
    elapsed = 0.0
    if not path.exists():
        return [], 0.0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a crash
        if ev["event"] == "ask":
            trials[ev["index"]] = TrialRecord(index=ev["index"], name=ev["name"], architecture=ev["architecture"])
        elif ev["event"] == "tell" and ev["index"] in trials:
            trials[ev["index"]] = trials[ev["index"]].with_(
                phase=ev["phase"],
                reward=ev["reward"],
                metrics=ev["metrics"],
                reason=ev["reason"],
                tell_sequence=ev["tellSequence"],
                asks_before_tell=ev["asksBeforeTell"],
            )
            elapsed = max(elapsed, float(ev.get("elapsedSeconds", 0.0)))
    return [trials[i] for i in sorted(trials)], elapsed

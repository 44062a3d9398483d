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

from kubenas.core.codec import record_of, spec_wire, status_wire
from kubenas.core.records import TrialRecord, trial_seed
from kubenas.core.space import SearchSpace

JOURNAL = "journal.jsonl"


class Journal:
    """Append-only event log of one local experiment: each line a Trial's spec (ask) or status (tell)."""

    def __init__(self, directory: Path, experiment: str, space: SearchSpace, seed: int) -> None:
        self.path = directory / JOURNAL
        self.experiment = experiment
        self.space = space
        self.seed = seed
        self._fh = self.path.open("a", encoding="utf-8")

    def _write(self, event: dict[str, Any]) -> None:
        self._fh.write(json.dumps(event, sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def asked(self, rec: TrialRecord) -> None:
        spec = spec_wire(rec, self.experiment, self.space.canonical(rec.architecture), trial_seed(self.seed, rec.index))
        self._write({"event": "ask", "name": rec.name, "spec": spec})

    def told(self, rec: TrialRecord, elapsed_seconds: float) -> None:
        line = {"event": "tell", "index": rec.index, "status": status_wire(rec), "elapsedSeconds": elapsed_seconds}
        self._write(line)

    def close(self) -> None:
        self._fh.close()


def read_journal(directory: Path) -> tuple[list[TrialRecord], float]:
    """Trials recorded in ``directory`` (asked-but-untold ones come back Pending) and the elapsed time."""
    path = directory / JOURNAL
    specs: dict[int, tuple[str, dict[str, Any]]] = {}
    statuses: dict[int, dict[str, Any]] = {}
    elapsed = 0.0
    if not path.exists():
        return [], 0.0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a crash
        if ev["event"] == "ask":
            spec = ev.get("spec") or _older_spec(ev)
            specs[int(spec["index"])] = (ev["name"], spec)
        elif ev["event"] == "tell" and ev["index"] in specs:
            statuses[ev["index"]] = ev.get("status") or _older_status(ev)
            elapsed = max(elapsed, float(ev.get("elapsedSeconds", 0.0)))
    trials = [record_of(name, spec, statuses.get(i)) for i, (name, spec) in sorted(specs.items())]
    return trials, elapsed


def _older_spec(ev: dict[str, Any]) -> dict[str, Any]:
    """An ask line written before lines carried the Trial's spec."""
    return {"experiment": "", "index": ev["index"], "architecture": ev["architecture"], "architectureId": ""}


def _older_status(ev: dict[str, Any]) -> dict[str, Any]:
    """A tell line written before lines carried the Trial's status."""
    keys = ("phase", "reward", "metrics", "reason", "tellSequence", "asksBeforeTell")
    return {k: ev[k] for k in keys if ev.get(k) is not None}

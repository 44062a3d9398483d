"""The results folder's journal: every ask and every tell, appended as JSON lines.

It is the local counterpart of the Trial objects on Kubernetes: enough to rebuild the strategy by
replay (``kubenas run --resume``), written with one ``write`` + ``flush`` + ``fsync`` per event so a
crash loses at most the line being written.

What is kept is the same for the reader and the writer: the lines up to the last newline. A crash can
only tear the last line (it then lacks its newline); the reader ignores such a tail and the writer
cuts it off before appending, so the next event starts on a line of its own instead of being glued to
the fragment and lost. Any other line that is not an event is corruption: :class:`JournalError`
names the file and the line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from kubenas.core.codec import record_of, spec_wire, status_wire
from kubenas.core.records import TrialRecord, trial_seed
from kubenas.core.space import SearchSpace
from kubenas.local.errors import JournalError, write_error

JOURNAL = "journal.jsonl"
#: how much of the file's end is read at a time when looking for the last newline
_BLOCK = 1 << 16


class Journal:
    """Append-only event log of one local experiment: each line a Trial's spec (ask) or status (tell)."""

    def __init__(self, directory: Path, experiment: str, space: SearchSpace, seed: int) -> None:
        self.path = directory / JOURNAL
        self.experiment = experiment
        self.space = space
        self.seed = seed
        try:
            self._fh = _open_for_append(self.path)
        except OSError as exc:
            raise write_error(self.path, exc) from None

    def _write(self, event: dict[str, Any]) -> None:
        try:
            self._fh.write((json.dumps(event, sort_keys=True) + "\n").encode())
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:  # a torn line is left at worst: the next open cuts it off
            raise write_error(self.path, exc) from None

    def asked(self, rec: TrialRecord) -> None:
        spec = spec_wire(rec, self.experiment, self.space.canonical(rec.architecture), trial_seed(self.seed, rec.index))
        self._write({"event": "ask", "name": rec.name, "spec": spec})

    def told(self, rec: TrialRecord, elapsed_seconds: float) -> None:
        line = {"event": "tell", "index": rec.index, "status": status_wire(rec), "elapsedSeconds": elapsed_seconds}
        self._write(line)

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError as exc:
            raise write_error(self.path, exc) from None


def _open_for_append(path: Path) -> IO[bytes]:
    """``path`` opened for appending, a torn last line (one without its newline) cut off first."""
    fh = path.open("ab")
    try:
        size = fh.seek(0, os.SEEK_END)
        kept = _kept_length(path, size)
        if kept < size:
            fh.truncate(kept)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        fh.close()
        raise
    return fh


def _kept_length(path: Path, size: int) -> int:
    """The length of ``path`` up to and including its last newline (0 without one)."""
    with path.open("rb") as fh:
        end = size
        while end > 0:
            start = max(0, end - _BLOCK)
            fh.seek(start)
            block = fh.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            end = start
    return 0


def read_journal(directory: Path) -> tuple[list[TrialRecord], float]:
    """Trials recorded in ``directory`` (asked-but-untold ones come back Pending) and the elapsed time.

    A torn last line (no newline) is ignored, as the writer will cut it off; any other line that is
    not an event raises :class:`JournalError` with its line number.
    """
    path = directory / JOURNAL
    specs: dict[int, tuple[str, dict[str, Any], int]] = {}  # index -> name, spec, line number
    statuses: dict[int, tuple[dict[str, Any], int]] = {}
    elapsed = 0.0
    if not path.exists():
        return [], 0.0
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]  # what the writer keeps: a torn tail is not an event yet
    for number, raw in enumerate(complete.split(b"\n"), start=1):
        if not raw.strip():
            continue
        ev = _event(path, number, raw)
        if ev["event"] == "ask":
            spec = ev.get("spec") or _older_spec(ev)
            specs[int(spec["index"])] = (str(ev["name"]), spec, number)
        elif ev["index"] in specs:
            statuses[ev["index"]] = (ev.get("status") or _older_status(ev), number)
            elapsed = max(elapsed, float(ev.get("elapsedSeconds", 0.0)))
    trials = []
    for i, (name, spec, number) in sorted(specs.items()):
        status, told_at = statuses.get(i, (None, None))
        try:
            trials.append(record_of(name, spec, status))
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            where = f"its ask (and its tell on line {told_at})" if told_at else "its ask"
            raise JournalError(path, number, f"trial {name}: {where} cannot be read back: {exc}") from None
    return trials, elapsed


def _event(path: Path, number: int, raw: bytes) -> dict[str, Any]:
    """Line ``number`` of the journal as an ask or tell event, or JournalError saying what is wrong."""
    try:
        ev = json.loads(raw)
    except ValueError:
        raise JournalError(path, number, "not a JSON line (only the last line can be torn by a crash)") from None
    if not isinstance(ev, dict) or ev.get("event") not in ("ask", "tell"):
        raise JournalError(path, number, 'not a journal event (an object with "event": "ask" or "tell")')
    try:
        if ev["event"] == "ask":
            spec = ev.get("spec") or _older_spec(ev)
            if not isinstance(spec, dict) or not isinstance(ev["name"], str):
                raise TypeError("spec is not an object or name is not a string")
            int(spec["index"])
        else:
            if not isinstance(ev["index"], int) or isinstance(ev["index"], bool):
                raise TypeError("index is not an integer")
            if not isinstance(ev.get("status") or _older_status(ev), dict):
                raise TypeError("status is not an object")
            float(ev.get("elapsedSeconds", 0.0))
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise JournalError(path, number, f"a malformed {ev['event']} event: {detail}") from None
    return ev


def _older_spec(ev: dict[str, Any]) -> dict[str, Any]:
    """An ask line written before lines carried the Trial's spec."""
    return {"experiment": "", "index": ev["index"], "architecture": ev["architecture"], "architectureId": ""}


def _older_status(ev: dict[str, Any]) -> dict[str, Any]:
    """A tell line written before lines carried the Trial's status."""
    keys = ("phase", "reward", "metrics", "reason", "tellSequence", "asksBeforeTell")
    return {k: ev[k] for k in keys if ev.get(k) is not None}

"""Rebuilding a controller when the recorded history counts candidates whose Trials were never written.

A pass writes new Trials in the background, so a result told meanwhile can record an
``asksBeforeTell`` that counts a candidate whose Trial is still being created, and Trials can land
out of index order. If the operator and the controller were both lost in that instant, the Trials
have a hole and a plain replay cannot place every tell. The way back is exact, because a strategy is
a deterministic function of its interleaving of asks and tells: replay the longest prefix of the
history that lies before the hole, ask the controller for the candidates from the hole on (it
proposes exactly the originals; those whose Trials exist are checked against them), write the
missing Trials, and repeat until the whole history replays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kubenas.core.records import TrialRecord


@dataclass(frozen=True)
class RecoveryStep:
    """Replay ``prefix``, then ask for candidates ``index`` .. ``index+count-1``."""

    prefix: list[TrialRecord]
    index: int
    count: int


def recovery_step(trials: Sequence[TrialRecord]) -> RecoveryStep | None:
    """The next step towards a replayable history, or None when the history is whole."""
    indices = {t.index for t in trials}
    hole = next(i for i in range(len(indices) + 1) if i not in indices)
    tells = sorted((t for t in trials if t.tell_sequence is not None), key=lambda t: t.tell_sequence or 0)
    first = next((t for t in tells if (t.asks_before_tell or 0) > hole), None)
    if first is None and hole == len(trials):
        return None
    # with no tell past the hole, the hole and what follows were asked after every tell
    end = max(indices) + 1 if first is None else first.asks_before_tell or 0
    count = end - hole
    cut = first.tell_sequence if first is not None else None
    prefix = [
        t
        if cut is None or t.tell_sequence is None or t.tell_sequence < cut
        else t.with_(phase="Running", reward=None, tell_sequence=None, asks_before_tell=None)
        for t in trials
        if t.index < hole
    ]
    return RecoveryStep(prefix, hole, count)

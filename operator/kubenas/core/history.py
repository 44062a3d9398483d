"""Rebuilding a strategy from the recorded trial history.

A strategy's state is a function of its seed and the interleaved sequence of asks and tells. The
history keeps every asked candidate (``index``, ask order) and, for every told result, its place in
tell order (``tell_sequence``) and how many asks had happened when it was told
(``asks_before_tell``). Replaying puts the tells back between the asks exactly where they were.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubenas.core.errors import ReplayError
from kubenas.core.records import TrialRecord
from kubenas.core.space import Architecture
from kubenas.core.strategies.base import Strategy


def replay(strategy: Strategy, trials: Sequence[TrialRecord]) -> list[Architecture]:
    """Drive a fresh ``strategy`` through ``trials`` so it ends in the state of the original run; the
    candidates it had to ask beyond the last recorded one (in order), which the caller keeps as asked.

    Each re-ask is checked against the recorded architecture: a mismatch means the strategy, its
    settings or its seed are not the ones that made this history, and raises ReplayError.

    Asks past the last recorded candidate: a light record (a one-shot search's evaluations) keeps
    only the told candidates, and with several asked at a time a result may have been told after the
    next candidates were asked (``asks_before_tell`` beyond the record). Those asks are made again,
    unchecked: the strategy is deterministic, so they are the candidates the original run asked, and
    the owner that asks for them next gets them back (:meth:`kubenas.core.search.Search.ask`).
    """
    by_index = sorted(trials, key=lambda t: t.index)
    for expected, t in enumerate(by_index):
        if t.index != expected:
            raise ValueError(f"history has a gap: trial index {expected} is missing")
    tells = sorted((t for t in by_index if t.told), key=lambda t: t.tell_sequence or 0)
    for seq, t in enumerate(tells):
        if t.tell_sequence != seq:
            raise ValueError(f"history has a gap in tell order at {seq}")
    space = strategy.space
    unrecorded: list[Architecture] = []

    def ask_until(n: int) -> None:
        while strategy.asked < n:
            position = strategy.asked
            got = strategy.ask()
            if position >= len(by_index):
                unrecorded.append(got)
                continue
            rec = by_index[position]
            if space.canonical(got) != space.canonical(rec.architecture):
                raise ReplayError(rec.index, space.canonical(rec.architecture), space.canonical(got))

    for t in tells:
        ask_until(max(t.asks_before_tell or 0, t.index + 1))
        strategy.tell(t.index, dict(t.architecture), t.observation())
    ask_until(len(by_index))
    return unrecorded

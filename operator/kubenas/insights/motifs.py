"""What the best architectures have in common, against everything the search tried.

For every structural decision (cell edge, chain layer) and every operation: its share among the top
``k`` succeeded trials and among all succeeded trials, and their ratio (the lift). Besides, per
group: the share of parameter-free operations and the mean depth of the longest conv path. A pure
function of the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubenas.core.records import TrialRecord
from kubenas.insights.genotype import longest_conv_path, parameter_free, structural
from kubenas.insights.importance import usable


@dataclass(frozen=True)
class OpShare:
    """One operation on one decision: share in the top k, share overall, and how much more often in the top."""

    decision: str
    operation: str
    top: float
    overall: float

    @property
    def lift(self) -> float | None:
        return None if self.overall == 0 else self.top / self.overall


@dataclass(frozen=True)
class Motifs:
    """Motifs of the top ``k`` (by reward) against all ``trials`` succeeded trials."""

    k: int
    trials: int
    shares: tuple[OpShare, ...]
    parameter_free: tuple[float, float]  # (top k, overall)
    conv_depth: tuple[float, float]  # mean longest conv path (top k, overall)

    def to_json(self) -> dict[str, Any]:
        return {
            "top_k": self.k,
            "trials": self.trials,
            "parameter_free_share": {"top": round(self.parameter_free[0], 4), "all": round(self.parameter_free[1], 4)},
            "longest_conv_path": {"top": round(self.conv_depth[0], 3), "all": round(self.conv_depth[1], 3)},
            "operations": [
                {"decision": s.decision, "operation": s.operation, "top": round(s.top, 4), "all": round(s.overall, 4)}
                for s in self.shares
            ],
        }

    def notable(self, limit: int = 12) -> list[OpShare]:
        """The shares that differ most between the top and everything, the most over-represented first."""
        ranked = sorted(self.shares, key=lambda s: (-(s.top - s.overall), s.decision, s.operation))
        return [s for s in ranked if s.top > s.overall][:limit]


def _share(rows: Sequence[TrialRecord], decision: str, op: str) -> float:
    return sum(str(r.architecture.get(decision)) == op for r in rows) / len(rows) if rows else 0.0


def _free_share(rows: Sequence[TrialRecord], decisions: Sequence[str]) -> float:
    total = len(rows) * len(decisions)
    return sum(parameter_free(r.architecture[d]) for r in rows for d in decisions) / total if total else 0.0


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def top_trials(records: Sequence[TrialRecord], k: int) -> list[TrialRecord]:
    """The ``k`` succeeded trials with the largest reward (ties: the earliest first)."""
    return sorted(usable(records), key=lambda r: (-(r.reward or 0.0), r.index))[:k]


def motifs(records: Sequence[TrialRecord], k: int = 10) -> Motifs | None:
    """Motifs of the top ``k``; None when no trial succeeded or the space has no cell or chain."""
    rows = usable(records)
    if not rows:
        return None
    decisions = [d for d in rows[0].architecture if structural(d)]
    if not decisions:
        return None
    top = top_trials(rows, k)
    shares = []
    for d in decisions:
        ops = sorted({str(r.architecture[d]) for r in rows})
        shares += [OpShare(d, op, _share(top, d, op), _share(rows, d, op)) for op in ops]
    return Motifs(
        k=len(top),
        trials=len(rows),
        shares=tuple(shares),
        parameter_free=(_free_share(top, decisions), _free_share(rows, decisions)),
        conv_depth=(
            _mean([longest_conv_path(r.architecture) for r in top]),
            _mean([longest_conv_path(r.architecture) for r in rows]),
        ),
    )

"""Which edits of a running experiment's spec take effect.

Only the budget's ``maxTrials`` (upwards) and ``parallelTrials`` may change: everything else defines
the search (space, strategy, seed, objective) or the trials already run, and changing it mid-way would
make the history a mix of two experiments that no replay can reproduce. The CRD refuses such edits
at admission (CEL transition rules); this module is the operator's own check, so that an edit which
reaches it anyway (an older CRD, a server without CEL) is refused with the same reasons instead of
silently changing the search, and local mode's check of a resumed run against its recorded spec.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.retrain import carry_resolution


@dataclass(frozen=True)
class SpecVerdict:
    """Whether the latest spec edit was accepted."""

    accepted: bool
    reason: str = "Accepted"
    message: str = ""


MUTABLE = {("budget", "maxTrials"), ("budget", "parallelTrials")}


def _differences(old: Any, new: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new)):
            yield from _differences(old.get(key), new.get(key), (*path, str(key)))
    elif old != new:
        yield path


def judge_edit(
    accepted: SearchExperimentSpec, edited: SearchExperimentSpec
) -> tuple[SearchExperimentSpec, SpecVerdict]:
    """The spec to run with after an edit, and whether the edit was accepted (with the reason if not).

    A retrain's resolved architectures live only in the accepted spec: they are carried into the edit.
    """
    edited = carry_resolution(accepted, edited)
    old, new = accepted.to_wire(), edited.to_wire()
    changed = list(_differences(old, new))
    if not changed:
        return accepted, SpecVerdict(True)
    for path in changed:
        field = "spec." + ".".join(path)
        if path not in MUTABLE:
            return accepted, SpecVerdict(
                False,
                "ImmutableField",
                f"{field} cannot change on an existing experiment (only budget.maxTrials, upwards, and"
                " budget.parallelTrials can); the experiment keeps running with its previous spec",
            )
    if edited.budget.max_trials < accepted.budget.max_trials:
        return accepted, SpecVerdict(
            False,
            "MaxTrialsLowered",
            f"spec.budget.maxTrials can be raised, not lowered ({accepted.budget.max_trials} →"
            f" {edited.budget.max_trials}); the experiment keeps maxTrials={accepted.budget.max_trials}",
        )
    return edited, SpecVerdict(True, "Accepted", "budget: " + describe_budget_change(accepted, edited))


def describe_budget_change(old: SearchExperimentSpec, new: SearchExperimentSpec) -> str:
    parts = []
    if old.budget.max_trials != new.budget.max_trials:
        parts.append(f"maxTrials {old.budget.max_trials} → {new.budget.max_trials}")
    if old.budget.parallel_trials != new.budget.parallel_trials:
        parts.append(f"parallelTrials {old.budget.parallel_trials} → {new.budget.parallel_trials}")
    return ", ".join(parts)

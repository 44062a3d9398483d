"""Where a trial's starting weights come from: its parent's output (``inheritWeights``).

Decided here, once, from the spec and the trial's record; the adapters only turn the answer into a
path (the results folder locally, the artifact store's mount in a pod), so local mode and the
operator hand a trial the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.records import trial_name


@dataclass(frozen=True)
class TrialOutput:
    """The output folder of trial ``trial`` of experiment ``experiment`` (model.pt, architecture.json)."""

    experiment: str
    trial: str


def start_weights(spec: SearchExperimentSpec, experiment: str, parents: Sequence[int]) -> TrialOutput | None:
    """The weights a trial of ``experiment`` with these ``parents`` (ask indexes) starts from; None: from scratch.

    With ``inheritWeights`` a child starts from its first parent's output. The parent is a told
    result (evolution breeds from the population, the progressive search from its centre), so its
    weights are written; when they are not (a pruned or failed parent), the trainer logs why and
    trains from scratch.
    """
    if spec.trial_template.inherit_weights and parents:
        return TrialOutput(experiment, trial_name(experiment, parents[0]))
    return None


__all__ = ["TrialOutput", "start_weights"]

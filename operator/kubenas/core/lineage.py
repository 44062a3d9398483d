"""Where a trial's starting weights come from: its parent's output (``inheritWeights``) or a
checkpoint (``initFrom``: another experiment's trial, or a file).

Decided here, once, from the spec and the trial's record; the adapters only turn the answer into a
path (the results folder locally, the artifact store's mount in a pod), so local mode and the
operator hand a trial the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.errors import SpecError
from kubenas.core.records import trial_name

INIT_FIELD = "spec.trialTemplate.initFrom"


@dataclass(frozen=True)
class TrialOutput:
    """The output folder of trial ``trial`` of experiment ``experiment`` (model.pt, architecture.json)."""

    experiment: str
    trial: str


@dataclass(frozen=True)
class CheckpointFile:
    """A ``model.pt`` or an output folder, named by path (local, or in the trainer container)."""

    path: str


def start_weights(
    spec: SearchExperimentSpec, experiment: str, parents: Sequence[int]
) -> TrialOutput | CheckpointFile | None:
    """The weights a trial of ``experiment`` with these ``parents`` (ask indexes) starts from; None: from scratch.

    With ``inheritWeights`` a child starts from its first parent's output. The parent is a told
    result (evolution breeds from the population, the progressive search from its centre), so its
    weights are written; when they are not (a pruned or failed parent), the trainer logs why and
    trains from scratch. Trials without a parent start from ``initFrom`` when it is given.
    """
    template = spec.trial_template
    if template.inherit_weights and parents:
        return TrialOutput(experiment, trial_name(experiment, parents[0]))
    init = template.init_from
    if init is None:
        return None
    if init.file is not None:
        return CheckpointFile(init.file)
    assert init.experiment is not None  # the API's rule: experiment or file
    if init.trial is None:
        raise SpecError(INIT_FIELD + ".trial", "the source's best trial must be resolved before the run starts")
    return TrialOutput(init.experiment, init.trial)


__all__ = ["CheckpointFile", "TrialOutput", "start_weights"]

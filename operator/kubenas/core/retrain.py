"""Retraining the top k of a finished search, or starting a search from them (``strategy.seedFrom``):
which architectures, fixed once in the accepted spec.

A retrain experiment (``spec.strategy.name: retrain``) names its source, a finished search; the
adapter reads that search's trials (a results folder locally, the Trials of another experiment on
Kubernetes) into a :class:`SourceRun` and :func:`resolved` turns the spec into one that lists the
architectures to retrain. The adapter stores that spec as the accepted one (the results folder's
``experiment.yaml``, the controller Secret), so a resumed run or a restarted operator replays the
same list even if the source changes or disappears later. Everything here is pure; reading the
source is the adapters' business.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kubenas.api.strategy import RetrainCandidate, RetrainSettings, RetrainSource, SeedFrom
from kubenas.api.v1alpha1 import Objective, SearchExperimentSpec
from kubenas.core.errors import SpecError
from kubenas.core.records import TrialRecord, objective_value
from kubenas.core.space import Architecture, SearchSpace, build_space
from kubenas.core.strategies import make_strategy

SOURCE_FIELD = "spec.strategy.retrain.source"
SEED_FIELD = "spec.strategy.seedFrom"
INIT_FIELD = "spec.trialTemplate.initFrom"


@dataclass(frozen=True)
class SourceRun:
    """What an adapter read of the source search: its name, objective, trials and whether it is over."""

    name: str
    objective: Objective
    trials: Sequence[TrialRecord]
    finished: bool
    phase: str = ""


def source_of(spec: SearchExperimentSpec) -> RetrainSource | None:
    """The source the adapter must read before the run starts; None when nothing is to resolve."""
    seed = spec.strategy.seed_from
    if seed is not None:
        return None if seed.architectures else seed
    settings = spec.strategy.retrain
    if spec.strategy.name != "retrain" or settings is None or settings.architectures:
        return None
    return settings.source


def describe(source: RetrainSource) -> str:
    """The source as a user wrote it, for messages."""
    return f"experiment {source.experiment}" if source.experiment else f"results folder {source.results}"


def init_source(spec: SearchExperimentSpec) -> RetrainSource | None:
    """The experiment ``initFrom`` names (its best trial is to be found, or the trial it names checked);
    None when it names no experiment."""
    init = spec.trial_template.init_from
    if init is None or init.experiment is None:
        return None
    return RetrainSource(experiment=init.experiment)


def resolved_init(
    spec: SearchExperimentSpec, run: SourceRun | None, *, weights_outlive_runs: bool = False
) -> SearchExperimentSpec:
    """The spec with ``initFrom.trial`` set to the best trial of ``run`` when it was not given
    (SpecError naming ``initFrom.experiment`` when the source is missing, unfinished or has no result).

    A trial given by name must be a succeeded trial of ``run``: a misspelt one would otherwise start
    every candidate from scratch, the warm start finding no weights. When ``run`` is missing that is an
    error too, unless the weights outlive the runs that wrote them (``weights_outlive_runs``: an
    artifact store keeps them after the SearchExperiment is deleted; locally the run's folder is the
    store)."""
    source = init_source(spec)
    init = spec.trial_template.init_from
    if source is None or init is None:
        return spec
    if init.trial is not None:
        if run is None and weights_outlive_runs:
            return spec
        if run is None:
            raise SpecError(f"{INIT_FIELD}.experiment", f"the source {describe(source)} does not exist")
        succeeded = {t.name for t in run.trials if t.phase == "Succeeded"}
        if init.trial not in succeeded:
            known = "" if len(succeeded) > 8 else f" (succeeded: {', '.join(sorted(succeeded)) or 'none'})"
            raise SpecError(
                f"{INIT_FIELD}.trial", f"{init.trial} is not a succeeded trial of {describe(source)}{known}"
            )
        return spec
    (best,) = _read(source, run, 1, "start from", f"{INIT_FIELD}.experiment")
    template = spec.trial_template.model_copy(update={"init_from": init.model_copy(update={"trial": best.trial})})
    return spec.model_copy(update={"trial_template": template})


def source_field(source: RetrainSource) -> str:
    prefix = SEED_FIELD if isinstance(source, SeedFrom) else SOURCE_FIELD
    return f"{prefix}.{'experiment' if source.experiment else 'results'}"


def top_architectures(trials: Iterable[TrialRecord], objective: Objective, k: int) -> list[RetrainCandidate]:
    """The ``k`` best distinct architectures among succeeded trials, best first (ties: earlier trial).

    Rewards are signed (larger is better), so the source's direction is already in them; pruned,
    failed and infeasible trials are not candidates: a pruned trial's reward is a partial one.
    """
    ranked = sorted(
        (t for t in trials if t.phase == "Succeeded" and t.reward is not None and math.isfinite(t.reward)),
        key=lambda t: (-(t.reward or 0.0), t.index),
    )
    out: list[RetrainCandidate] = []
    seen: set[str] = set()
    for t in ranked:
        key = json.dumps(dict(t.architecture), sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        value = objective_value(objective, t.reward) if t.reward is not None else None
        out.append(RetrainCandidate(architecture=dict(t.architecture), trial=t.name or None, value=value))
        if len(out) == k:
            break
    return out


def resolved(spec: SearchExperimentSpec, run: SourceRun | None = None) -> SearchExperimentSpec:
    """The spec to accept: a retrain's architectures filled from ``run`` (None: the source is missing).

    Other specs come back unchanged. SpecError, naming the source, when it is missing, unfinished or
    has no succeeded trial, or when maxTrials would leave some of the architectures untrained.
    """
    seed = spec.strategy.seed_from
    if seed is not None and not seed.architectures:
        seed = seed.model_copy(update={"architectures": _read(seed, run, seed.top_k, "start from")})
        spec = spec.model_copy(update={"strategy": spec.strategy.model_copy(update={"seed_from": seed})})
    settings = spec.strategy.retrain
    if spec.strategy.name != "retrain" or settings is None:
        if seed is not None:  # checked against the space now (not by building the strategy: no torch here)
            seeds(spec)
        return spec
    source = source_of(spec)
    if source is not None:
        settings = settings.model_copy(update={"architectures": _read(source, run, settings.top_k, "retrain")})
        strategy = spec.strategy.model_copy(update={"retrain": settings})
        spec = spec.model_copy(update={"strategy": strategy})
    _check_budget(spec, settings)
    make_strategy(spec.strategy, build_space(spec.search_space))  # the strategy's own checks, now
    return spec


def seeds(spec: SearchExperimentSpec, space: SearchSpace | None = None) -> list[Architecture]:
    """The resolved ``seedFrom`` architectures, each validated by the space (SpecError with its path)."""
    seed = spec.strategy.seed_from
    if seed is None:
        return []
    space = space or build_space(spec.search_space)
    return [
        space.validate(c.architecture, f"{SEED_FIELD}.architectures[{i}].architecture")
        for i, c in enumerate(seed.architectures)
    ]


def _read(
    source: RetrainSource, run: SourceRun | None, k: int, use: str, field: str | None = None
) -> list[RetrainCandidate]:
    """The ``k`` best architectures of the source run; SpecError naming the source (``field``, by
    default where the source is given) when it is missing, unfinished or has no succeeded trial."""
    field = field or source_field(source)
    if run is None:
        raise SpecError(field, f"the source {describe(source)} does not exist")
    if not run.finished:
        phase = f" (phase {run.phase})" if run.phase else ""
        raise SpecError(field, f"the source {describe(source)} has not finished{phase}: {use} it once it has")
    candidates = top_architectures(run.trials, run.objective, k)
    if not candidates:
        raise SpecError(field, f"the source {describe(source)} has no succeeded trial to {use}")
    return candidates


def _check_budget(spec: SearchExperimentSpec, settings: RetrainSettings) -> None:
    count = len(settings.architectures)
    if spec.budget.max_trials < count:
        raise SpecError(
            "spec.budget.maxTrials",
            f"{spec.budget.max_trials} trials would leave {count - spec.budget.max_trials} of the {count}"
            f" architectures to retrain untrained: set maxTrials to {count} (or a multiple, for more seeds)"
            " or lower topK",
        )


def carry_resolution(accepted: SearchExperimentSpec, edited: SearchExperimentSpec) -> SearchExperimentSpec:
    """``edited`` with the architectures ``accepted`` resolved, when it names the same source.

    The user's object keeps ``source`` and no list; the accepted spec holds the list. Comparing the two
    for an edit must not see the list as a change of the strategy.
    """
    seed_old, seed_new = accepted.strategy.seed_from, edited.strategy.seed_from
    if (
        seed_old is not None
        and seed_new is not None
        and seed_old.architectures
        and not seed_new.architectures
        and (seed_new.experiment, seed_new.results, seed_new.top_k)
        == (seed_old.experiment, seed_old.results, seed_old.top_k)
    ):
        seeded = seed_new.model_copy(update={"architectures": seed_old.architectures})
        edited = edited.model_copy(update={"strategy": edited.strategy.model_copy(update={"seed_from": seeded})})
    init_old, init_new = accepted.trial_template.init_from, edited.trial_template.init_from
    if (
        init_old is not None
        and init_new is not None
        and init_new.trial is None
        and init_old.trial is not None
        and init_new.experiment == init_old.experiment
        and init_new.file is None
    ):
        template = edited.trial_template.model_copy(update={"init_from": init_old})
        edited = edited.model_copy(update={"trial_template": template})
    old, new = accepted.strategy.retrain, edited.strategy.retrain
    if old is None or new is None or new.architectures or not old.architectures or old.source is None:
        return edited
    if (new.source, new.top_k, edited.strategy.seed) != (old.source, old.top_k, accepted.strategy.seed):
        return edited
    strategy = edited.strategy.model_copy(
        update={"retrain": new.model_copy(update={"architectures": old.architectures})}
    )
    return edited.model_copy(update={"strategy": strategy})


__all__ = [
    "SourceRun",
    "carry_resolution",
    "describe",
    "init_source",
    "resolved",
    "resolved_init",
    "seeds",
    "source_of",
    "top_architectures",
]

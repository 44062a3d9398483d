"""The operator's reading of a retrain's source: another SearchExperiment of the same namespace.

Read straight from the API server, once, when the retrain is first accepted (not from the watch
cache, which may not hold the source's Trials yet right after the operator starts). Only Trials owned
by the source object count, so a deleted and recreated source of the same name is not mixed up
with the Trials its predecessor left behind.
"""

from __future__ import annotations

from pydantic import ValidationError

from kubenas.api.strategy import RetrainSource
from kubenas.api.v1alpha1 import API_VERSION, SearchExperimentSpec
from kubenas.core.errors import SpecError
from kubenas.core.retrain import INIT_FIELD, SourceRun, init_source, source_field
from kubenas.core.retrain import source_of as retrain_source
from kubenas.operator import names
from kubenas.operator.kube import KubeApi, NotFound
from kubenas.operator.status import TERMINAL_PHASES
from kubenas.operator.views import TrialView, owner_uid


async def read_source(api: KubeApi, namespace: str, spec: SearchExperimentSpec) -> SourceRun | None:
    """The source experiment of a retrain or of seedFrom and its Trials; None when it does not exist (or
    nothing is to be resolved, which :func:`kubenas.core.retrain.resolved` tells apart)."""
    return await read_run(api, namespace, retrain_source(spec))


async def read_init_source(api: KubeApi, namespace: str, spec: SearchExperimentSpec) -> SourceRun | None:
    """The experiment initFrom names: its best trial is to be found, or the trial it names checked."""
    return await read_run(api, namespace, init_source(spec), f"{INIT_FIELD}.experiment")


async def read_run(
    api: KubeApi, namespace: str, source: RetrainSource | None, field: str | None = None
) -> SourceRun | None:
    """A SearchExperiment of the namespace and the Trials it owns; None when it does not exist."""
    if source is None or source.experiment is None:
        return None
    try:
        body = await api.get(API_VERSION, "SearchExperiment", namespace, source.experiment)
    except NotFound:
        return None
    try:
        objective = SearchExperimentSpec.model_validate(body.get("spec") or {}).objective
    except ValidationError as exc:
        raise SpecError(field or source_field(source), f"the source experiment's spec is invalid: {exc}") from None
    phase = (body.get("status") or {}).get("phase") or "Pending"
    uid = body["metadata"].get("uid", "")
    items = await api.list(API_VERSION, "Trial", namespace, names.experiment_labels(source.experiment))
    trials = [TrialView.parse(item).record() for item in items if owner_uid(item) == uid]
    return SourceRun(source.experiment, objective, trials, phase in TERMINAL_PHASES, phase)

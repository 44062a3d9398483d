"""One codec between the core's :class:`TrialRecord` and the API's Trial (``TrialSpec`` + ``TrialStatus``).

A trial's record travels as the Trial object's ``spec`` and ``status`` everywhere it leaves the
process: the Trial objects on Kubernetes, the controller's replay and tell bodies, the local journal.
The pydantic models of :mod:`kubenas.api.v1alpha1` define that shape, so a field added to the API is
read and written by every adapter at once, and non-finite numbers (which JSON and the API server
refuse) are dropped in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kubenas.api.v1alpha1 import CurvePoint, TrialSpec, TrialStatus
from kubenas.core.records import TrialRecord


def finite_or_none(value: float | None) -> float | None:
    """``value`` if it is a finite number, else None (JSON and the API server carry no NaN or infinity)."""
    return value if value is not None and math.isfinite(value) else None


def spec_wire(rec: TrialRecord, experiment: str, architecture_id: str, seed: int) -> dict[str, Any]:
    """A Trial's ``spec`` for this record."""
    return TrialSpec(
        experiment=experiment,
        index=rec.index,
        architecture=dict(rec.architecture),
        architecture_id=architecture_id,
        seed=seed,
        parents=list(rec.parents),
    ).to_wire()


def status_wire(
    rec: TrialRecord, *, start_time: str | None = None, completion_time: str | None = None
) -> dict[str, Any]:
    """A Trial's ``status`` for this record (camelCase; unset fields left out, so it merges as a patch)."""
    status = TrialStatus.model_construct(
        phase=rec.phase,
        reward=finite_or_none(rec.reward),
        metrics={k: v for k, v in rec.metrics.items() if math.isfinite(v)},
        attempts=rec.attempts,
        reason=rec.reason,
        message=rec.message[:1000] if rec.message else None,
        tell_sequence=rec.tell_sequence,
        asks_before_tell=rec.asks_before_tell,
        curve=[CurvePoint.model_construct(step=s, value=v) for s, v in rec.curve if math.isfinite(v)] or None,
        gpu_seconds=None if rec.gpu_seconds is None else round(rec.gpu_seconds, 3),
    )
    out = {k: v for k, v in status.model_dump(by_alias=True, exclude_none=True).items() if k not in _TIMES}
    if start_time:
        out["startTime"] = start_time
    if completion_time:
        out["completionTime"] = completion_time
    return out


_TIMES = ("startTime", "completionTime")


def record_of(name: str, spec: Mapping[str, Any], status: Mapping[str, Any] | None) -> TrialRecord:
    """The record a Trial's ``spec`` and ``status`` hold (ValueError names the field at fault)."""
    parsed = TrialSpec.model_validate(spec)
    st = TrialStatus.model_validate(status or {})
    return TrialRecord(
        index=parsed.index,
        architecture=dict(parsed.architecture),
        name=name,
        phase=st.phase,
        reward=st.reward,
        metrics=dict(st.metrics),
        reason=st.reason,
        message=st.message,
        attempts=st.attempts,
        tell_sequence=st.tell_sequence,
        asks_before_tell=st.asks_before_tell,
        curve=tuple((p.step, p.value) for p in st.curve),
        parents=tuple(parsed.parents),
        gpu_seconds=st.gpu_seconds,
    )


def trial_wire(rec: TrialRecord, experiment: str, architecture_id: str = "", seed: int = 0) -> dict[str, Any]:
    """``{"name", "spec", "status"}``: a record as the controller protocol and the journal carry it."""
    return {
        "name": rec.name,
        "spec": spec_wire(rec, experiment, architecture_id, seed),
        "status": status_wire(rec),
    }


def record_from_wire(data: Mapping[str, Any]) -> TrialRecord:
    """The inverse of :func:`trial_wire`."""
    return record_of(str(data.get("name") or ""), data["spec"], data.get("status"))

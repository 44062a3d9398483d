"""The ``kubenas.io/v1alpha1`` API as pydantic models: the single source of the CRDs in crds/.

This is the lowest layer: plain data and validation, no I/O. The core reads these models.
"""

from kubenas.api.v1alpha1 import (
    GROUP,
    VERSION,
    Budget,
    Objective,
    SearchExperiment,
    SearchExperimentSpec,
    SearchSpaceSpec,
    Trial,
    TrialSpec,
    TrialTemplate,
)

__all__ = [
    "GROUP",
    "VERSION",
    "Budget",
    "Objective",
    "SearchExperiment",
    "SearchExperimentSpec",
    "SearchSpaceSpec",
    "Trial",
    "TrialSpec",
    "TrialTemplate",
]

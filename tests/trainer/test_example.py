"""The digits example is a valid SearchExperiment whose settings and space this trainer accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from kubenas.api.v1alpha1 import SearchExperiment
from kubenas.core.space import build_space
from kubenas_trainer.candidate import parse_candidate
from kubenas_trainer.ops import OPERATIONS, canonical_op
from kubenas_trainer.settings import resolve_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits-cell-search.yaml"


def test_digits_example_runs_this_trainer_on_digits() -> None:
    exp = SearchExperiment.model_validate(yaml.safe_load(EXAMPLE.read_text()))
    template = exp.spec.trial_template
    assert template.command == ["kubenas-trainer"] and exp.spec.objective.metric == "val_accuracy"
    settings, ignored = resolve_settings(template.settings, {})
    assert settings.dataset == "digits" and settings.threads == 1 and not ignored
    space = build_space(exp.spec.search_space)
    wire = exp.spec.search_space.model_dump(by_alias=True, exclude_none=True)
    assert all(canonical_op(op, "op") in OPERATIONS for op in wire["cell"]["operations"])
    architecture = space.sample(np.random.default_rng(0))
    assert parse_candidate(architecture, wire).nodes == wire["cell"]["nodes"]

"""Local mode's reading of a retrain's source: another run's results folder.

``source.experiment: NAME`` is the folder ``NAME`` beside this run's results folder (``results/NAME``
by default, where ``kubenas run`` put it), ``source.results`` a folder given by path. The trials come
from the folder's journal, the objective from its ``experiment.yaml``, and the run counts as finished
once its ``summary.json`` says Succeeded or Failed and no trial is left untold.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubenas.api.strategy import RetrainSource
from kubenas.api.v1alpha1 import SearchExperiment
from kubenas.core.retrain import SourceRun, init_source, resolved, resolved_init, source_of
from kubenas.load import load_experiment
from kubenas.local.journal import JOURNAL, read_journal

SPEC_FILE = "experiment.yaml"
SUMMARY_FILE = "summary.json"


def source_folder(source: RetrainSource, results: Path) -> Path:
    """Where the source run's results are, for a retrain whose own results go to ``results``."""
    if source.results is not None:
        return Path(source.results)
    assert source.experiment is not None
    return results.parent / source.experiment


def read_source(folder: Path) -> SourceRun | None:
    """The run recorded in ``folder``; None when the folder holds no Kubenas run."""
    if not (folder / SPEC_FILE).is_file() or not (folder / JOURNAL).is_file():
        return None
    exp = load_experiment(folder / SPEC_FILE)
    trials, _ = read_journal(folder)
    phase = ""
    summary = folder / SUMMARY_FILE
    if summary.is_file():
        phase = str(json.loads(summary.read_text()).get("phase", ""))
    finished = phase in ("Succeeded", "Failed") and all(t.told for t in trials)
    return SourceRun(exp.metadata.name, exp.spec.objective, trials, finished, phase or "Running")


def resolve(exp: SearchExperiment, results: Path) -> SearchExperiment:
    """``exp`` with what it names of other runs read from them: a retrain's or seedFrom's architectures,
    initFrom's best trial (SpecError naming the source)."""
    source = source_of(exp.spec)
    run = read_source(source_folder(source, results)) if source is not None else None
    spec = resolved(exp.spec, run)
    init = init_source(spec)
    if init is not None:
        spec = resolved_init(spec, read_source(source_folder(init, results)))
    return exp if spec is exp.spec else exp.model_copy(update={"spec": spec})

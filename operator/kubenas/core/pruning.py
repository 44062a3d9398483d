"""Stopping rules: Optuna's pruners judging learning curves, as a pure function of the trial history.

The driver owns one :class:`CurveJudge` when ``spec.earlyStopping`` is set. It mirrors the trials in
an in-memory Optuna study whose trial *number* is the Kubenas trial index, and asks Optuna's
pruner (``MedianPruner``, ``SuccessiveHalvingPruner``, ``HyperbandPruner``) whether a running trial
should stop after each point of its curve. No rule is written again here.

Why the decision replays exactly. Everything the pruners read is a function of the stored curves:

- the median rule reads the curves of *finished* (COMPLETE) trials and the judged trial's own curve;
- successive halving and Hyperband also read each trial's *rung values*, which Optuna records the
  first time the trial is judged at or past a rung's step: the value of the first point at or past
  it. Judging every point of a curve in order (which a rebuilt judge does for the stored history,
  ignoring the answers) records the same rung values as the live run did;
- Hyperband puts a trial in a bracket by a hash of the study name and the trial number, both fixed.

Curves only grow: a point at or below the curve's last step is ignored (a retried attempt is judged
again once it passes where the previous one stopped), and so is a point past
:data:`~kubenas.api.v1alpha1.MAX_CURVE_POINTS` or a non-finite value. The judge sees exactly the
curve stored in the record, so a driver rebuilt from the stored history decides the same.

Cost: a judgement scans the study's trials once (what Optuna's pruners do), O(history).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, SuccessiveHalvingPruner
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import TrialState

from kubenas.api.early_stopping import EarlyStopping
from kubenas.api.v1alpha1 import MAX_CURVE_POINTS, Objective
from kubenas.core.records import TrialRecord

__all__ = ["CurveJudge", "accepts_point", "make_pruner"]

#: the in-memory study's name: part of Hyperband's bracket hash, so it must never change
STUDY_NAME = "kubenas"


def make_pruner(rule: EarlyStopping) -> BasePruner:
    """The Optuna pruner of ``spec.earlyStopping``."""
    if rule.rule == "median":
        return MedianPruner(n_startup_trials=rule.startup_trials, n_warmup_steps=rule.warmup_steps)
    if rule.rule == "asha":
        return SuccessiveHalvingPruner(min_resource=rule.min_resource, reduction_factor=rule.reduction_factor)
    assert rule.max_resource is not None  # the API's rule: hyperband needs maxResource
    return HyperbandPruner(
        min_resource=rule.min_resource, max_resource=rule.max_resource, reduction_factor=rule.reduction_factor
    )


def accepts_point(curve: Sequence[tuple[int, float]], step: int, value: float) -> bool:
    """Whether ``(step, value)`` extends ``curve`` (see the module docstring: curves only grow, bounded)."""
    if not math.isfinite(value) or step < 0 or len(curve) >= MAX_CURVE_POINTS:
        return False
    return not curve or step > curve[-1][0]


class CurveJudge:
    """Optuna's pruner over the experiment's curves. Not thread-safe; the driver owns it."""

    def __init__(self, rule: EarlyStopping, objective: Objective, history: Sequence[TrialRecord] = ()) -> None:
        self.rule = rule
        self.metric = objective.metric
        self.pruner = make_pruner(rule)
        optuna.logging.set_verbosity(logging.WARNING)  # as the Optuna strategies do: no line per study
        self._storage = InMemoryStorage()
        direction = StudyDirection.MAXIMIZE if objective.direction == "maximize" else StudyDirection.MINIMIZE
        self._study_id = self._storage.create_new_study([direction], STUDY_NAME)
        self.study = optuna.load_study(study_name=STUDY_NAME, storage=self._storage)
        self._ids: list[int] = []  # Optuna trial id of each Kubenas index
        self._replays_rungs = rule.rule != "median"  # the median rule records nothing while judging
        for rec in sorted(history, key=lambda t: t.index):
            for step, value in rec.curve:
                self._report(rec.index, step, value, judge=self._replays_rungs)
            if rec.done:
                self.finished(rec)

    def _trial_id(self, index: int) -> int:
        """The Optuna trial of ``index``; trials are created in index order so that number == index."""
        while len(self._ids) <= index:
            self._ids.append(self._storage.create_new_trial(self._study_id))
        return self._ids[index]

    def _report(self, index: int, step: int, value: float, *, judge: bool = True) -> bool:
        trial_id = self._trial_id(index)
        self._storage.set_trial_intermediate_value(trial_id, step, value)
        if not judge:
            return False
        return self.pruner.prune(self.study, self._storage.get_trial(trial_id))

    def should_stop(self, index: int, step: int, value: float) -> bool:
        """Record a point the trial's curve accepted (:func:`accepts_point`) and judge the trial."""
        return self._report(index, step, value)

    def finished(self, rec: TrialRecord) -> None:
        """A trial is settled: finished trials are what the median rule compares with."""
        trial_id = self._trial_id(rec.index)
        if self._storage.get_trial(trial_id).state.is_finished():
            return
        if rec.phase in ("Succeeded", "Infeasible"):
            final = rec.metrics.get(self.metric)
            if final is None or not math.isfinite(final):
                final = rec.curve[-1][1] if rec.curve else math.nan
            if math.isfinite(final):
                self._storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [final])
                return
        state = TrialState.PRUNED if rec.phase == "Pruned" else TrialState.FAIL
        self._storage.set_trial_state_values(trial_id, state)

"""``spec.oneShot``: weight-sharing search in three phases instead of one training per candidate.

1. **Supernet**: one trainer run trains a network that holds every candidate of the search space,
   one uniformly drawn path per step (single-path one-shot, SPOS), and writes its checkpoint.
2. **Search**: ``spec.strategy`` (evolution by default, any strategy but ``retrain``) proposes
   ``evaluations`` candidates; one evaluator process loads the supernet once and scores each with
   the inherited weights after re-estimating its batch-norm statistics. These scores are cheap and
   biased, so they are kept as a light record, not as Trials.
3. **Retrain**: the ``topK`` best of those candidates are trained from scratch as ordinary Trials
   (``budget.maxTrials`` of them: ``topK``, or a multiple for more seeds per architecture), with the
   trial template; their results are the experiment's results.

The search space may hold a cell and a layer chain only: weights cannot be shared across
hyperparameters such as a width or a learning rate.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from kubenas.api.base import ApiModel, Rule
from kubenas.api.settings import Settings

#: what runs phases 1 and 2: ``train`` or ``evaluate ...`` is appended
DEFAULT_COMMAND = ("python3", "-m", "kubenas_trainer.oneshot")


class OneShot(ApiModel):
    """Single-path one-shot search: supernet training, a search over it, the top k retrained from scratch."""

    RULES = (
        Rule(
            "!has(self.topK) || self.topK <= (has(self.evaluations) ? self.evaluations : 100)",
            "topK must not exceed evaluations: only evaluated candidates can be retrained",
            lambda o: o.top_k <= o.evaluations,
            ".topK",
        ),
    )

    sampling: Literal["uniform"] = Field(
        "uniform", description="How paths are drawn while the supernet trains: uniform over buildable candidates."
    )
    command: list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]] = Field(
        default_factory=lambda: list(DEFAULT_COMMAND),
        min_length=1,
        max_length=64,
        description="Command of the supernet trainer and evaluator, in the trial image; train or evaluate is appended.",
    )
    supernet_settings: Settings = Field(
        default_factory=dict,
        description="Trial settings overridden for the supernet's training (e.g. more epochs).",
    )
    evaluations: int = Field(100, ge=1, le=100000, description="Candidates the strategy evaluates on the supernet.")
    recalibration_batches: int = Field(
        4, ge=1, le=1000, description="Training batches each candidate's batch-norm statistics are re-estimated on."
    )
    top_k: int = Field(3, ge=1, le=1000, description="Best evaluated candidates retrained from scratch as Trials.")


class SupernetStatus(ApiModel):
    """Phase 1 as recorded: the record a restarted operator decides from (``core.oneshot.SupernetRecord``)."""

    attempts: int = Field(0, ge=0, description="Trainer attempts made (pods of the supernet Job).")
    succeeded: bool = Field(False, description="The supernet is trained and its checkpoint written.")
    failed: bool = Field(False, description="The supernet's training failed for good.")
    metrics: dict[str, float] = Field(default_factory=dict, description="What its training reported.")
    reason: str | None = Field(None, description="Why it ended as it did.")
    message: str | None = Field(None, description="The trainer's or the Job's message.")


class OneShotEvaluations(ApiModel):
    """Phase 2 in numbers: candidates scored on the supernet (a light record, not Trials)."""

    told: int = Field(0, ge=0, description="Candidates scored and told to the strategy.")
    succeeded: int = Field(0, ge=0, description="Of those, scored with a result.")
    failed: int = Field(0, ge=0, description="Of those, refused or failed.")
    target: int = Field(0, ge=0, description="oneShot.evaluations.")


class OneShotCandidate(ApiModel):
    """One of the best candidates by one-shot score, retrained in phase 3."""

    evaluation: str = Field(..., description="The evaluation that scored it (<experiment>-eval-<index>).")
    architecture: dict[str, Any] = Field(default_factory=dict, description="Its decisions.")
    score: float | None = Field(None, description="Its objective value on the supernet's weights.")


class OneShotStatus(ApiModel):
    """Where a one-shot search stands: its phase and what each phase recorded."""

    phase: Literal["Supernet", "Search", "Retrain"] = Field(..., description="Supernet, Search or Retrain.")
    supernet: SupernetStatus = Field(default_factory=SupernetStatus, description="Phase 1's record.")
    evaluations: OneShotEvaluations = Field(default_factory=OneShotEvaluations, description="Phase 2's counts.")
    best_score: float | None = Field(None, description="The best one-shot score (objective value) so far.")
    top: list[OneShotCandidate] = Field(
        default_factory=list, max_length=1000, description="The top k by one-shot score, best first."
    )
    parameter_free: float | None = Field(
        None, ge=0, le=1, description="Share of parameter-free edges in the top k (a collapse guard)."
    )

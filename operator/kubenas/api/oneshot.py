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

``sampling: enas`` (Pham et al. 2018) draws phase 1's paths from an LSTM policy (the REINFORCE
strategy's controller) held by the experiment's controller: the trainer alternates training steps on
policy-drawn paths with rounds in which a batch of policy-drawn paths is scored on validation
minibatches with the shared weights, each path's own accuracy its reward (``oneShot.enas``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from kubenas.api.base import ApiModel, Rule
from kubenas.api.settings import Settings
from kubenas.api.strategy import ReinforceSettings

#: what runs phases 1 and 2: ``train`` or ``evaluate ...`` is appended
DEFAULT_COMMAND = ("python3", "-m", "kubenas_trainer.oneshot")
#: What the default evaluator reports for each candidate (kubenas_trainer.oneshot): the only metrics a
#: one-shot search's objective and constraints can name unless it brings its own command.
EVALUATOR_METRICS = ("val_accuracy", "val_loss", "params", "flops", "eval_seconds")


def enas_policy() -> ReinforceSettings:
    """The path policy's defaults, after ENAS's controller (Pham et al. 2018, micro search): logits
    clipped to 1.1 tanh (a choice is at most e^2.2 times as likely as another: the policy cannot
    collapse onto one operation), raw accuracy as reward against a moving-average baseline, learning
    rate 0.0035, entropy bonus 1e-4, so that thousands of per-path rewards move it gradually."""
    return ReinforceSettings(
        learning_rate=0.0035,
        entropy_weight=0.0001,
        baseline_decay=0.99,
        tanh_constant=1.1,
        reward_normalization="none",
    )


class EnasSettings(ApiModel):
    """ENAS path sampling while the supernet trains: how often the policy is rewarded, and the policy."""

    paths_per_batch: int = Field(
        16,
        ge=1,
        le=1024,
        description="Paths the policy draws per round and the trainer rewards, each scored on its own validation"
        " minibatch with the shared weights.",
    )
    batches_per_epoch: int = Field(
        2,
        ge=1,
        le=1000,
        description="Rounds per supernet epoch: the epoch's training steps are split between them, each followed by"
        " a batch of rewarded paths.",
    )
    warmup_epochs: int = Field(
        0,
        ge=0,
        le=1000,
        description="Epochs of uniform paths before the policy draws them (no rewards meanwhile): the shared"
        " weights of every operation get some training before the policy compares them.",
    )
    policy: ReinforceSettings = Field(
        default_factory=enas_policy,
        description="The LSTM policy (the reinforce strategy's settings; defaults as in ENAS).",
    )


class OneShot(ApiModel):
    """Single-path one-shot search: supernet training, a search over it, the top k retrained from scratch."""

    RULES = (
        Rule(
            "!has(self.topK) || self.topK <= (has(self.evaluations) ? self.evaluations : 100)",
            "topK (3 when left out) must not exceed evaluations (100 when left out): only evaluated candidates"
            " can be retrained",
            lambda o: o.top_k <= o.evaluations,
            ".topK",
        ),
        Rule(
            "!has(self.enas) || (has(self.sampling) && self.sampling == 'enas')",
            "enas settings apply to sampling: enas only",
            lambda o: o.enas is None or o.sampling == "enas",
            ".enas",
        ),
        Rule(
            "!has(self.evaluators) || self.evaluators <= (has(self.evaluations) ? self.evaluations : 100)",
            "evaluators must not exceed evaluations (100 when left out): each evaluator pod scores at least one"
            " candidate",
            lambda o: o.evaluators <= o.evaluations,
            ".evaluators",
        ),
    )

    sampling: Literal["uniform", "enas"] = Field(
        "uniform",
        description="How paths are drawn while the supernet trains: uniform over buildable candidates, or by the"
        " controller's LSTM policy rewarded per path (enas).",
    )
    enas: EnasSettings | None = Field(None, description="ENAS path sampling settings (sampling: enas).")
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
    evaluators: int = Field(
        1,
        ge=1,
        le=64,
        description="Evaluator pods scoring candidates side by side, each loading the supernet once; the strategy"
        " then proposes this many at a time, as for parallel trials (local mode scores them one by one, with the"
        " same decisions).",
    )
    recalibration_batches: int = Field(
        4, ge=1, le=1000, description="Training batches each candidate's batch-norm statistics are re-estimated on."
    )
    finetune_steps: int = Field(
        20,
        ge=0,
        le=100000,
        description="SGD steps each candidate trains from its inherited weights before it is scored (0: none);"
        " the supernet's weights are restored after each candidate. 20 by default: the steps lifted the"
        " supernet's ranking and ended the collapse to parameter-free cells in the benchmark"
        " (docs/benchmarks.md), at about five times an evaluation's cost without them.",
    )
    top_k: int = Field(3, ge=1, le=1000, description="Best evaluated candidates retrained from scratch as Trials.")

    def evaluate_command(self, checkpoint: str) -> list[str]:
        """The evaluate command of phase 2 on the supernet in ``checkpoint`` (the evaluator pod's and local mode's)."""
        tuned = ["--finetune-steps", str(self.finetune_steps)] if self.finetune_steps else []
        evaluate = ["evaluate", "--checkpoint", checkpoint, "--recalibration-batches", str(self.recalibration_batches)]
        return [*self.command, *evaluate, *tuned]

    def enas_settings(self) -> EnasSettings | None:
        """The ENAS settings in force (their defaults when ``enas`` is left out), None for uniform sampling."""
        if self.sampling != "enas":
            return None
        return self.enas or EnasSettings()


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

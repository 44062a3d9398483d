"""``SearchExperiment`` and ``Trial``, group ``kubenas.io``, version ``v1alpha1``.

Every field carries a description: it becomes ``kubectl explain`` output through the generated CRD.
Cross-field rules are written twice on purpose: as pydantic validators (local mode, the operator)
and as CEL ``x-kubernetes-validations`` in the CRD (``kubectl apply``), see ``kubenas.api.crd``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kubenas.api.base import ApiModel, cel, immutable, keyed_list, with_rules
from kubenas.api.space import SearchSpaceSpec
from kubenas.api.strategy import StrategySpec

GROUP = "kubenas.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Quantity = int | str


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``90s``, ``1h30m`` or ``2.5h``."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 45m, 1h30m)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


class Constraint(ApiModel):
    """A bound on a reported metric (params, flops, latency_ms, ...).

    ``hard`` constraints make a violating trial infeasible (it counts as the worst result); ``soft``
    ones scale the reward down as in MnasNet: ``reward * (bound / value) ** weight``.
    """

    model_config = with_rules(
        cel("has(self.max) || has(self.min)", "a constraint needs max or min"),
        cel("!has(self.max) || !has(self.min) || self.min <= self.max", "min must not exceed max", ".min"),
    )

    metric: str = Field(..., min_length=1, max_length=63, description="Metric the trial reports.")
    max: float | None = Field(None, description="Largest allowed value.")
    min: float | None = Field(None, description="Smallest allowed value.")
    mode: Literal["hard", "soft"] = Field("hard", description="hard: infeasible if violated; soft: penalised.")
    weight: float = Field(0.07, ge=0, le=10, description="Exponent of the soft penalty.")

    @model_validator(mode="after")
    def _bounded(self) -> Constraint:
        if self.max is None and self.min is None:
            raise ValueError("a constraint needs max or min")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class Objective(ApiModel):
    """What the search optimises: one reported metric, its direction, an optional goal and constraints."""

    metric: str = Field("val_accuracy", min_length=1, max_length=63, description="Metric name in the trial's result.")
    direction: Literal["maximize", "minimize"] = Field("maximize", description="Whether larger is better.")
    target: float | None = Field(None, description="Stop with GoalReached once a trial reaches this value.")
    constraints: list[Constraint] = Field(default_factory=list, max_length=16, description="Bounds on other metrics.")


class Budget(ApiModel):
    """How much the search may spend. Only maxTrials (upwards) and parallelTrials may change later."""

    model_config = with_rules(
        cel("self.parallelTrials <= self.maxTrials", "parallelTrials must not exceed maxTrials", ".parallelTrials"),
        cel(
            "!has(self.maxFailedTrials) || self.maxFailedTrials <= self.maxTrials",
            "maxFailedTrials must not exceed maxTrials",
            ".maxFailedTrials",
        ),
        cel("self.maxTrials >= oldSelf.maxTrials", "maxTrials can be raised, not lowered", ".maxTrials"),
        cel(
            "has(self.maxFailedTrials) == has(oldSelf.maxFailedTrials)"
            " && (!has(self.maxFailedTrials) || self.maxFailedTrials == oldSelf.maxFailedTrials)",
            "maxFailedTrials cannot change once the experiment exists",
            ".maxFailedTrials",
        ),
        cel(
            "has(self.maxDuration) == has(oldSelf.maxDuration)"
            " && (!has(self.maxDuration) || self.maxDuration == oldSelf.maxDuration)",
            "maxDuration cannot change once the experiment exists",
            ".maxDuration",
        ),
    )

    max_trials: int = Field(..., ge=1, le=100000, description="Trials to run in total.")
    parallel_trials: int = Field(1, ge=1, le=1000, description="Trials running at the same time.")
    max_failed_trials: int | None = Field(
        None, ge=0, le=100000, description="Fail the experiment once more trials than this have failed."
    )
    max_duration: str | None = Field(
        None, pattern=DURATION_PATTERN, description="Stop starting trials after this long (e.g. 6h, 90m)."
    )

    @model_validator(mode="after")
    def _within(self) -> Budget:
        if self.parallel_trials > self.max_trials:
            raise ValueError("parallelTrials must not exceed maxTrials")
        if self.max_failed_trials is not None and self.max_failed_trials > self.max_trials:
            raise ValueError("maxFailedTrials must not exceed maxTrials")
        return self

    def max_duration_seconds(self) -> float | None:
        return None if self.max_duration is None else parse_duration(self.max_duration)


class EnvVar(ApiModel):
    """An environment variable given to every trial."""

    name: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Variable name.")
    value: str = Field("", description="Variable value.")


class Resources(ApiModel):
    """Compute resources of a container, as in a Pod (``nvidia.com/gpu`` included)."""

    requests: dict[str, Quantity] = Field(default_factory=dict, description="Minimum resources (cpu, memory, ...).")
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Maximum resources; GPUs go here, e.g. nvidia.com/gpu: 1."
    )


class Toleration(ApiModel):
    """A Pod toleration, so trials can run on tainted (e.g. GPU) nodes."""

    key: str | None = Field(None, description="Taint key; empty with operator Exists matches all.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: str | None = Field(None, description="Taint value for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect matched; empty matches all."
    )
    toleration_seconds: int | None = Field(None, ge=0, description="How long a NoExecute taint is tolerated.")


class TrialTemplate(ApiModel):
    """How one trial runs: a container in a Kubernetes Job, or a local process in local mode.

    The trial receives its architecture and settings through the trial contract (docs/trial-contract.md).
    """

    image: str | None = Field(None, description="Trainer image (required on Kubernetes, ignored locally).")
    command: list[str] = Field(..., min_length=1, description="Command that trains one candidate.")
    args: list[str] = Field(default_factory=list, description="Arguments appended to the command.")
    env: list[EnvVar] = Field(
        default_factory=list, json_schema_extra=keyed_list("name"), description="Extra environment variables."
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form settings handed to the trainer as KUBENAS_SETTINGS (dataset, epochs, budget...).",
    )
    working_dir: str | None = Field(None, description="Working directory of the trial process.")
    resources: Resources = Field(default_factory=Resources, description="Container resources.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the trial pod requires.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations of the trial pod.")
    priority_class_name: str | None = Field(None, description="PriorityClass of trial pods.")
    retries: int = Field(
        2, ge=0, le=20, description="Retries after disruptions or kills (exit 137); a bad candidate is never retried."
    )
    deadline_seconds: int | None = Field(
        None, ge=1, description="Kill a trial running longer than this (the Job's activeDeadlineSeconds)."
    )

    @field_validator("env")
    @classmethod
    def _distinct_env(cls, value: list[EnvVar]) -> list[EnvVar]:
        names = [e.name for e in value]
        if len(set(names)) != len(names):
            raise ValueError("env names must be distinct")
        return value


class ControllerSpec(ApiModel):
    """The experiment's controller pod, which holds the search strategy."""

    image: str | None = Field(None, description="Image of the controller (default: the trial image).")
    resources: Resources = Field(default_factory=Resources, description="Controller container resources.")


class SearchExperimentSpec(ApiModel):
    """A neural architecture search: what to search, how, for what, within which budget."""

    search_space: SearchSpaceSpec = Field(
        ..., json_schema_extra=immutable("searchSpace"), description="The decisions that define an architecture."
    )
    strategy: StrategySpec = Field(
        ..., json_schema_extra=immutable("strategy"), description="The search strategy, its seed and settings."
    )
    objective: Objective = Field(
        default_factory=Objective, json_schema_extra=immutable("objective"), description="What is optimised."
    )
    budget: Budget = Field(..., description="How much the search may spend.")
    trial_template: TrialTemplate = Field(
        ..., json_schema_extra=immutable("trialTemplate"), description="How each trial runs."
    )
    controller: ControllerSpec = Field(
        default_factory=ControllerSpec, json_schema_extra=immutable("controller"), description="The controller pod."
    )


class ObjectMeta(ApiModel):
    """The part of Kubernetes metadata Kubenas reads; the rest is kept but not checked."""

    model_config = {**ApiModel.model_config, "extra": "allow"}

    name: str = Field(..., min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None


ExperimentPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
TrialPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Infeasible"]


class Condition(ApiModel):
    """A standard Kubernetes condition."""

    type: str = Field(..., description="Condition type (Running, Succeeded, Failed, ControllerReady).")
    status: Literal["True", "False", "Unknown"] = Field(..., description="True, False or Unknown.")
    reason: str = Field("", description="CamelCase reason, e.g. MaxTrialsReached, GoalReached, TooManyFailures.")
    message: str = Field("", description="Human-readable detail.")
    last_transition_time: datetime | None = Field(None, description="When status last changed.")
    observed_generation: int | None = Field(None, description="Generation this condition was computed from.")


class TrialCounts(ApiModel):
    """Trials by phase."""

    pending: int = Field(0, ge=0, description="Created, not yet running.")
    running: int = Field(0, ge=0, description="Training now.")
    succeeded: int = Field(0, ge=0, description="Finished with a reward.")
    failed: int = Field(0, ge=0, description="Failed (after retries) or bad candidates.")
    infeasible: int = Field(0, ge=0, description="Finished but violating a hard constraint.")
    total: int = Field(0, ge=0, description="All trials created.")


class BestTrial(ApiModel):
    """The best trial so far: small by design, the full history lives in Trial objects."""

    name: str = Field(..., description="Trial name.")
    architecture: dict[str, Any] = Field(default_factory=dict, description="Its decisions.")
    reward: float = Field(..., description="Its reward (the objective metric, constraints applied).")
    metrics: dict[str, float] = Field(default_factory=dict, description="Its reported metrics.")


class SearchExperimentStatus(ApiModel):
    """Observed state of an experiment. Kept small; the history lives in Trials."""

    phase: ExperimentPhase = Field("Pending", description="Pending, Running, Succeeded or Failed.")
    conditions: list[Condition] = Field(default_factory=list, description="Standard conditions.")
    observed_generation: int | None = Field(None, description="Generation of the spec last acted on.")
    trials: TrialCounts = Field(default_factory=TrialCounts, description="Trials by phase.")
    best_trial: BestTrial | None = Field(None, description="The best trial so far.")
    best_reward: float | None = Field(None, description="Reward of the best trial (for printer columns).")
    progress: str | None = Field(None, description="Trials finished out of maxTrials, e.g. 12/50.")
    start_time: datetime | None = Field(None, description="When the search started.")
    completion_time: datetime | None = Field(None, description="When it finished.")
    message: str | None = Field(None, description="Why it is in its phase.")


class SearchExperiment(ApiModel):
    """A neural architecture search run by Kubenas."""

    api_version: Literal["kubenas.io/v1alpha1"] = Field(API_VERSION, description="kubenas.io/v1alpha1")
    kind: Literal["SearchExperiment"] = Field("SearchExperiment", description="SearchExperiment")
    metadata: ObjectMeta
    spec: SearchExperimentSpec
    status: SearchExperimentStatus | None = None

    @field_validator("metadata")
    @classmethod
    def _name_leaves_room_for_children(cls, meta: ObjectMeta) -> ObjectMeta:
        if len(meta.name) > 52 or not meta.name[0].isalpha():
            raise ValueError(
                "name must start with a letter and have at most 52 characters"
                " (children are named <name>-controller and <name>-00042)"
            )
        return meta


class TrialSpec(ApiModel):
    """One candidate architecture to train, as the strategy proposed it."""

    experiment: str = Field(..., description="Name of the owning SearchExperiment.")
    index: int = Field(..., ge=0, description="Position in the order the strategy proposed candidates (0-based).")
    architecture: dict[str, Any] = Field(..., description="Decision name to chosen value.")
    architecture_id: str = Field(..., description="Canonical string of the architecture.")
    seed: int = Field(0, ge=0, description="Seed handed to the trainer.")


class TrialStatus(ApiModel):
    """Outcome of a trial, plus the bookkeeping that lets the strategy be replayed exactly."""

    phase: TrialPhase = Field("Pending", description="Pending, Running, Succeeded, Failed or Infeasible.")
    reward: float | None = Field(None, description="Reward told to the strategy.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Final metrics the trainer reported.")
    attempts: int = Field(0, ge=0, description="Pods started for this trial.")
    reason: str | None = Field(None, description="CamelCase reason of the phase (BadCandidate, DeadlineExceeded...).")
    message: str | None = Field(None, description="Detail of the phase.")
    start_time: datetime | None = Field(None, description="When the trial started.")
    completion_time: datetime | None = Field(None, description="When the trial finished.")
    tell_sequence: int | None = Field(
        None, ge=0, description="Order in which this result was told to the strategy (0-based)."
    )
    asks_before_tell: int | None = Field(
        None, ge=0, description="How many candidates had been asked when this result was told."
    )


class Trial(ApiModel):
    """One candidate of a SearchExperiment, trained by one Job."""

    api_version: Literal["kubenas.io/v1alpha1"] = Field(API_VERSION, description="kubenas.io/v1alpha1")
    kind: Literal["Trial"] = Field("Trial", description="Trial")
    metadata: ObjectMeta
    spec: TrialSpec
    status: TrialStatus | None = None

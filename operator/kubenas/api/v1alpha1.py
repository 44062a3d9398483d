"""``SearchExperiment`` and ``Trial``, group ``kubenas.io``, version ``v1alpha1``.

Every field carries a description: it becomes ``kubectl explain`` output through the generated CRD.
Cross-field rules are written twice on purpose: as pydantic validators (local mode, the operator)
and as CEL ``x-kubernetes-validations`` in the CRD (``kubectl apply``), see ``kubenas.api.crd``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from kubenas.api import kube
from kubenas.api.base import ApiModel, Rule, cel, immutable, keyed_list, no_server_default, with_rules
from kubenas.api.early_stopping import EarlyStopping
from kubenas.api.oneshot import DEFAULT_COMMAND, EVALUATOR_METRICS, OneShot, OneShotStatus
from kubenas.api.settings import Settings
from kubenas.api.space import SearchSpaceSpec
from kubenas.api.strategy import LINEAGE_STRATEGIES, MULTI_OBJECTIVE_STRATEGIES, StrategySpec
from kubenas.api.template import (
    GPU_LIMIT_CEL,
    TEMPLATE_RULES,
    ArtifactLocation,
    Artifacts,
    PodTemplate,
    trainer_cel,
    trainer_gpu_limit,
)
from kubenas.api.weights import InitFrom

GROUP = "kubenas.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: a Go-style duration, units in order (``1h30m``, ``90s``, ``2.5h``, ``500ms``), each number at most six
#: digits, so that no spelling overflows a Kubernetes (Go) duration, which the CEL rules parse
_DURATION_NUMBER = r"[0-9]{1,6}(\.[0-9]{1,9})?"
DURATION_PATTERN = rf"^({_DURATION_NUMBER}h)?({_DURATION_NUMBER}m)?({_DURATION_NUMBER}s)?({_DURATION_NUMBER}ms)?$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

#: a resource quantity: a non-negative integer or a string such as 500m or 1.5Gi.
Quantity = (
    Annotated[int, Field(ge=0)]
    | Annotated[str, StringConstraints(pattern=kube.QUANTITY, min_length=1, max_length=kube.QUANTITY_MAX)]
)
#: a bounded string for free text that reaches a container (command entries, environment values).
Text = Annotated[str, StringConstraints(max_length=4096)]
#: the resource whose count makes a trial's GPU time
GPU_RESOURCE = "nvidia.com/gpu"


#: the longest maxDuration: ten years, far below the ~292 years a Kubernetes (Go) duration holds
MAX_DURATION = "87600h"


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``90s``, ``1h30m`` or ``2.5h``."""
    if not text or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 45m, 1h30m)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


class Constraint(ApiModel):
    """A bound on a reported metric (params, flops, latency_ms, ...).

    ``hard`` constraints make a violating trial infeasible (it counts as the worst result); ``soft``
    ones scale the reward down as in MnasNet: ``reward * (bound / value) ** weight``.
    """

    RULES = (
        Rule(
            "has(self.max) || has(self.min)",
            "a constraint needs max or min",
            lambda c: c.max is not None or c.min is not None,
            ".max",
        ),
        Rule(
            "!has(self.max) || !has(self.min) || self.min <= self.max",
            "min must not exceed max",
            lambda c: c.max is None or c.min is None or c.min <= c.max,
            ".min",
        ),
        Rule(
            "!has(self.mode) || self.mode != 'soft' || ((!has(self.max) || self.max > 0.0)"
            " && (!has(self.min) || self.min > 0.0))",
            "a soft constraint's bound must be above 0: its penalty is a ratio to the bound, (bound / measured) **"
            " weight (use mode: hard for a bound at or below 0)",
            lambda c: c.mode != "soft" or all(b is None or b > 0 for b in (c.max, c.min)),
            ".mode",
        ),
    )

    metric: str = Field(..., min_length=1, max_length=63, description="Metric the trial reports.")
    max: float | None = Field(None, description="Largest allowed value.")
    min: float | None = Field(None, description="Smallest allowed value.")
    mode: Literal["hard", "soft"] = Field("hard", description="hard: infeasible if violated; soft: penalised.")
    weight: float = Field(0.07, ge=0, le=10, description="Exponent of the soft penalty.")


#: the most objectives one search may have
MAX_OBJECTIVES = 4
Direction = Literal["maximize", "minimize"]


class ObjectiveMetric(ApiModel):
    """One objective of a multi-objective search: a reported metric and its direction."""

    name: str = Field(..., min_length=1, max_length=63, description="Metric name in the trial's result.")
    direction: Direction = Field("maximize", description="Whether larger is better.")


class Objective(ApiModel):
    """What the search optimises: one reported metric and its direction, or several (``metrics``,
    searched for their Pareto front), an optional goal and constraints.

    With ``metrics``, the first one is the primary objective: ``metric`` and ``direction`` follow it
    (giving them is allowed only when they agree), the reward, ``target`` and the best trial are about
    it, and the Pareto front is about all of them (docs/multi-objective.md).
    """

    RULES = (
        Rule(
            "!has(self.metrics) || size(self.metrics) == 0 || !has(self.metric) || self.metric == self.metrics[0].name",
            "metric must be the first of metrics (or be left out)",
            lambda o: not o.metrics or o.metric == o.metrics[0].name,
            ".metric",
        ),
        Rule(
            "!has(self.metrics) || size(self.metrics) == 0 || !has(self.direction)"
            " || self.direction == (has(self.metrics[0].direction) ? self.metrics[0].direction : 'maximize')",
            "direction must be that of the first of metrics (or be left out)",
            lambda o: not o.metrics or o.direction == o.metrics[0].direction,
            ".direction",
        ),
        Rule(
            "!has(self.metrics) || size(self.metrics) < 2 || !has(self.constraints)"
            " || self.constraints.all(c, !has(c.mode) || c.mode == 'hard')",
            "a soft constraint scales a single reward: with several objectives use hard constraints"
            " or make the metric an objective",
            lambda o: len(o.metrics) < 2 or all(c.mode == "hard" for c in o.constraints),
            ".constraints",
        ),
    )

    metric: str = Field(
        "val_accuracy",
        min_length=1,
        max_length=63,
        json_schema_extra=no_server_default,
        description="Metric name in the trial's result (default val_accuracy; with metrics, the first of them).",
    )
    direction: Direction = Field(
        "maximize",
        json_schema_extra=no_server_default,
        description="Whether larger is better (default maximize; with metrics, the first one's).",
    )
    metrics: list[ObjectiveMetric] = Field(
        default_factory=list,
        max_length=MAX_OBJECTIVES,
        json_schema_extra=keyed_list("name"),
        description="Several objectives, primary first: the search looks for their Pareto front.",
    )
    target: float | None = Field(None, description="Stop with GoalReached once a trial reaches this value.")
    constraints: list[Constraint] = Field(default_factory=list, max_length=16, description="Bounds on other metrics.")

    @model_validator(mode="before")
    @classmethod
    def _primary_from_metrics(cls, data: Any) -> Any:
        """``metric`` and ``direction`` left out follow the first of ``metrics``."""
        if not isinstance(data, dict) or not isinstance(data.get("metrics"), list) or not data["metrics"]:
            return data
        first = data["metrics"][0]
        if isinstance(first, ObjectiveMetric):
            first = {"name": first.name, "direction": first.direction}
        if not isinstance(first, dict):
            return data
        out = dict(data)
        if "name" in first:
            out.setdefault("metric", first["name"])
        out.setdefault("direction", first.get("direction", "maximize"))
        return out

    @field_validator("metrics")
    @classmethod
    def _distinct_metrics(cls, value: list[ObjectiveMetric]) -> list[ObjectiveMetric]:
        names = [m.name for m in value]
        if len(set(names)) != len(names):
            raise ValueError("metrics names must be distinct")
        return value

    @property
    def multi(self) -> bool:
        """Whether the search has several objectives (and so a Pareto front)."""
        return len(self.metrics) > 1

    def objectives(self) -> list[ObjectiveMetric]:
        """Every objective, primary first (the single-objective form as a list of one)."""
        return list(self.metrics) or [ObjectiveMetric(name=self.metric, direction=self.direction)]


class Budget(ApiModel):
    """How much the search may spend. Only maxTrials (upwards) and parallelTrials may change later."""

    RULES = (
        Rule(
            "!has(self.parallelTrials) || self.parallelTrials <= self.maxTrials",
            "parallelTrials must not exceed maxTrials",
            lambda b: b.parallel_trials <= b.max_trials,
            ".parallelTrials",
        ),
        Rule(
            "!has(self.maxFailedTrials) || self.maxFailedTrials <= self.maxTrials",
            "maxFailedTrials must not exceed maxTrials",
            lambda b: b.max_failed_trials is None or b.max_failed_trials <= b.max_trials,
            ".maxFailedTrials",
        ),
        Rule(
            f"!has(self.maxDuration) || (duration(self.maxDuration) > duration('0s')"
            f" && duration(self.maxDuration) <= duration('{MAX_DURATION}'))",
            f"maxDuration must be above 0s and at most {MAX_DURATION} (ten years)",
            lambda b: b.max_duration is None or 0 < parse_duration(b.max_duration) <= parse_duration(MAX_DURATION),
            ".maxDuration",
        ),
    )
    model_config = with_rules(
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
        cel(
            "has(self.maxGpuHours) == has(oldSelf.maxGpuHours)"
            " && (!has(self.maxGpuHours) || self.maxGpuHours == oldSelf.maxGpuHours)",
            "maxGpuHours cannot change once the experiment exists",
            ".maxGpuHours",
        ),
    )

    max_trials: int = Field(..., ge=1, le=100000, description="Trials to run in total.")
    parallel_trials: int = Field(1, ge=1, le=1000, description="Trials running at the same time.")
    max_failed_trials: int | None = Field(
        None, ge=0, le=100000, description="Fail the experiment once more trials than this have failed."
    )
    max_duration: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=DURATION_PATTERN,
        description=f"Stop starting trials after this long (e.g. 6h, 90m; above 0s, at most {MAX_DURATION}).",
    )

    max_gpu_hours: float | None = Field(
        None,
        gt=0,
        le=1e7,
        description="End the search once its trials have used this many GPU-hours (a trial's wall time times"
        " the GPUs it asks for); running trials are cancelled.",
    )

    def max_duration_seconds(self) -> float | None:
        return None if self.max_duration is None else parse_duration(self.max_duration)


class EnvVar(ApiModel):
    """An environment variable given to every trial."""

    name: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=256, description="Variable name.")
    value: Text = Field("", description="Variable value.")


def _quantities(kind: str, extended_rule: str) -> str:
    return f"!has(self.{kind}) || self.{kind}.all(k, {extended_rule})"


def _resource_names_ok(resources: dict[str, Quantity]) -> bool:
    return all(len(k) <= kube.QUALIFIED_NAME_MAX and kube.matches(kube.RESOURCE_NAME, k) for k in resources)


def _requests_within_limits(r: Resources) -> bool:
    for name, wanted in r.requests.items():
        if name in r.limits:
            low, high = kube.quantity(wanted), kube.quantity(r.limits[name])
            if low is not None and high is not None and low > high:
                return False
    return True


def _extended_whole(resources: dict[str, Quantity]) -> bool:
    return all(kube.is_whole(v) for k, v in resources.items() if "/" in k and kube.quantity(v) is not None)


def _extended_limited(r: Resources) -> bool:
    for name, wanted in r.requests.items():
        if "/" not in name:
            continue
        if name not in r.limits:
            return False
        low, high = kube.quantity(wanted), kube.quantity(r.limits[name])
        if low is not None and high is not None and low != high:
            return False
    return True


def _per_kind(cel_of: Callable[[str], str], message: str, check: Callable[[dict[str, Quantity]], bool]) -> list[Rule]:
    """The same rule for requests and for limits, each blaming its own map."""
    return [
        Rule(cel_of(kind), message, lambda r, kind=kind: check(getattr(r, kind)), f".{kind}")
        for kind in ("requests", "limits")
    ]


_QUANTITY_CEL = "isQuantity(string(self.{kind}[k]))"
#: resources a container may name (cpu, memory, ephemeral-storage and one extended resource): the
#: bound keeps the quantity rules within the API server's CEL cost budget.
MAX_RESOURCES = 4
_RESOURCE_NAME_CEL = f"k.size() <= {kube.QUALIFIED_NAME_MAX} && k.matches(r'{kube.RESOURCE_NAME}')"


class Resources(ApiModel):
    """Compute resources of a container, as in a Pod (``nvidia.com/gpu`` included).

    The API server checks a Pod's resources only when the Job controller creates it, long after the
    experiment was accepted; these rules refuse at admission what that check would refuse: unknown
    resource names, requests above limits, and an extended resource (a GPU) that is fractional or
    requested without the equal limit Kubernetes demands (extended resources cannot be overcommitted).
    """

    RULES = (
        *_per_kind(
            lambda kind: _quantities(kind, _RESOURCE_NAME_CEL),
            "resource names are cpu, memory, ephemeral-storage or an extended resource such as nvidia.com/gpu",
            _resource_names_ok,
        ),
        Rule(
            "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits)"
            " || quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)",
            "requests must not exceed limits",
            _requests_within_limits,
            ".requests",
        ),
        *_per_kind(
            lambda kind: _quantities(
                kind,
                f"!k.contains('/') || !{_QUANTITY_CEL.format(kind=kind)}"
                f" || quantity(string(self.{kind}[k])).isInteger()",
            ),
            "an extended resource (such as nvidia.com/gpu) is a whole number",
            _extended_whole,
        ),
        Rule(
            "!has(self.requests) || self.requests.all(k, !k.contains('/')"
            " || (has(self.limits) && k in self.limits"
            " && quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) == 0))",
            "an extended resource (such as nvidia.com/gpu) requested needs an equal limit",
            _extended_limited,
            ".limits",
        ),
    )

    requests: dict[str, Quantity] = Field(
        default_factory=dict, max_length=MAX_RESOURCES, description="Minimum resources (cpu, memory, ...)."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=MAX_RESOURCES,
        description="Maximum resources; GPUs go here, e.g. nvidia.com/gpu: 1.",
    )

    def gpus(self) -> float:
        """GPUs the container holds (limits win, as the scheduler counts extended resources there):
        what a trial's GPU time (``budget.maxGpuHours``, the GPU-seconds metric) is multiplied by."""
        value = self.limits.get(GPU_RESOURCE, self.requests.get(GPU_RESOURCE, 0))
        try:
            return float(value)
        except (TypeError, ValueError):
            return 0.0


def _key_ok(t: Toleration) -> bool:
    return t.key is None or t.key == "" or kube.qualified_name_ok(t.key)


class Toleration(ApiModel):
    """A Pod toleration, so trials can run on tainted (e.g. GPU) nodes; Kubernetes' own rules apply."""

    RULES = (
        Rule(
            "!has(self.key) || self.key == '' || (self.key.size() <= "
            f"{kube.QUALIFIED_NAME_MAX} && self.key.matches(r'{kube.QUALIFIED_NAME}'))",
            "key must be a qualified name (an optional DNS subdomain and '/', then at most 63 characters)",
            _key_ok,
            ".key",
        ),
        Rule(
            "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
            "operator must be Exists when key is empty",
            lambda t: bool(t.key) or t.operator == "Exists",
            ".operator",
        ),
        Rule(
            "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
            "value must be empty when operator is Exists",
            lambda t: t.operator != "Exists" or not t.value,
            ".value",
        ),
        Rule(
            "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            "tolerationSeconds is only allowed with effect NoExecute",
            lambda t: t.toleration_seconds is None or t.effect == "NoExecute",
            ".tolerationSeconds",
        ),
    )

    key: str | None = Field(
        None, max_length=kube.QUALIFIED_NAME_MAX, description="Taint key; empty with operator Exists matches all."
    )
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: str | None = Field(
        None, max_length=kube.LABEL_MAX, pattern=kube.LABEL_VALUE, description="Taint value for Equal (a label value)."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect matched; empty matches all."
    )
    toleration_seconds: int | None = Field(None, ge=0, le=2**53, description="How long a NoExecute taint is tolerated.")


def _node_selector_ok(selector: dict[str, str]) -> bool:
    return all(kube.qualified_name_ok(k) for k in selector)


class TrialTemplate(ApiModel):
    """How one trial runs: a container in a Kubernetes Job, or a local process in local mode.

    The trial receives its architecture and settings through the trial contract (docs/trial-contract.md).
    Settings travel in one environment variable, which Linux caps at 128 KiB: hence the bounds on
    their number and size.
    """

    RULES = (
        *TEMPLATE_RULES,
        Rule(
            "!has(self.nodeSelector) || self.nodeSelector.all(k, k.size() <= "
            f"{kube.QUALIFIED_NAME_MAX} && k.matches(r'{kube.QUALIFIED_NAME}'))",
            "nodeSelector keys must be label keys (an optional DNS subdomain and '/', then at most 63 characters)",
            lambda t: _node_selector_ok(t.node_selector),
            ".nodeSelector",
        ),
    )

    image: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        pattern=kube.IMAGE,
        description="Trainer image (required on Kubernetes, ignored locally).",
    )
    command: list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]] = Field(
        ..., min_length=1, max_length=256, description="Command that trains one candidate (no empty entries)."
    )
    args: list[Text] = Field(default_factory=list, max_length=256, description="Arguments appended to the command.")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=128,
        json_schema_extra=keyed_list("name"),
        description="Extra environment variables.",
    )
    settings: Settings = Field(
        default_factory=dict,
        description="Free-form settings handed to the trainer as KUBENAS_SETTINGS (dataset, epochs, budget...).",
    )
    working_dir: str | None = Field(None, max_length=4096, description="Working directory of the trial process.")
    resources: Resources = Field(default_factory=Resources, description="Container resources.")
    node_selector: dict[str, Annotated[str, StringConstraints(max_length=kube.LABEL_MAX, pattern=kube.LABEL_VALUE)]] = (
        Field(default_factory=dict, max_length=64, description="Node labels the trial pod requires.")
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=64, description="Tolerations of the trial pod."
    )
    priority_class_name: str | None = Field(
        None,
        max_length=kube.SUBDOMAIN_MAX,
        pattern=kube.DNS1123_SUBDOMAIN,
        description="PriorityClass of trial pods (a DNS subdomain).",
    )
    retries: int = Field(
        2, ge=0, le=20, description="Retries after disruptions or kills (exit 137); a bad candidate is never retried."
    )
    deadline_seconds: int | None = Field(
        None,
        ge=1,
        le=2**31 - 1,
        description="Kill a trial running longer than this, from its first start, retries included (the Job's"
        " activeDeadlineSeconds; local mode counts the same way); it fails as DeadlineExceeded.",
    )
    template: PodTemplate | None = Field(
        None,
        description="Kubernetes' pod template (labels, annotations, a core/v1 PodSpec) the short form is merged into.",
    )
    inherit_weights: bool = Field(
        False,
        description="Start each trial that has a parent (evolution's child, the progressive search's neighbour) from"
        " its parent's weights: tensors matching by name and shape, new edges starting at zero. On Kubernetes the"
        " parent's weights are read from spec.artifacts.",
    )
    init_from: InitFrom | None = Field(
        None,
        description="A checkpoint every trial starts from (fine-tuning): another experiment's trial, or a file;"
        " tensors matching by name and shape are copied. With inheritWeights, trials that have a parent start from"
        " the parent instead.",
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

    image: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        pattern=kube.IMAGE,
        description="Image of the controller (default: the trial image).",
    )
    resources: Resources = Field(default_factory=Resources, description="Controller container resources.")


_INHERITS = "has(self.trialTemplate.inheritWeights) && self.trialTemplate.inheritWeights"
_SEVERAL_OBJECTIVES = "has(self.objective) && has(self.objective.metrics) && self.objective.metrics.size() > 1"


_TEMPLATE_LABELS = "self.trialTemplate.template.metadata.labels"
_QUEUE_LABELLED = (
    "has(self.trialTemplate.template) && has(self.trialTemplate.template.metadata)"
    f" && has({_TEMPLATE_LABELS}) && '{kube.KUEUE_QUEUE_LABEL}' in {_TEMPLATE_LABELS}"
)


_EVALUATED = repr(list(EVALUATOR_METRICS))


def _custom_evaluator(one_shot: OneShot) -> bool:
    return list(one_shot.command) != list(DEFAULT_COMMAND)


def _evaluated(objective: Objective) -> bool:
    """Whether the default one-shot evaluator reports every metric ``objective`` names."""
    names = [m.name for m in objective.objectives()] + [c.metric for c in objective.constraints]
    return all(n in EVALUATOR_METRICS for n in names)


class SearchExperimentSpec(ApiModel):
    """A neural architecture search: what to search, how, for what, within which budget."""

    RULES = (
        Rule(
            f"!has(self.queueName) || !({_QUEUE_LABELLED})"
            f" || {_TEMPLATE_LABELS}['{kube.KUEUE_QUEUE_LABEL}'] == self.queueName",
            f"queueName and the pod template's label {kube.KUEUE_QUEUE_LABEL} name different queues: set one",
            lambda s: s.queue_name is None or s.template_queue() in (None, s.queue_name),
            ".queueName",
        ),
        Rule(
            f"!({_INHERITS}) || self.strategy.name in {list(LINEAGE_STRATEGIES)}",
            f"inheritWeights needs a strategy whose candidates have parents: {' or '.join(LINEAGE_STRATEGIES)}",
            lambda s: not s.trial_template.inherit_weights or s.strategy.name in LINEAGE_STRATEGIES,
            ".trialTemplate.inheritWeights",
        ),
        Rule(
            f"!({_INHERITS}) || has(self.artifacts)",
            "inheritWeights reads each parent's weights from the artifact store: set spec.artifacts",
            lambda s: not s.trial_template.inherit_weights or s.artifacts is not None,
            ".trialTemplate.inheritWeights",
            kubernetes_only=True,
        ),
        Rule(
            "!has(self.trialTemplate.initFrom) || !has(self.trialTemplate.initFrom.experiment) || has(self.artifacts)",
            "initFrom.experiment reads that experiment's trial from the artifact store: set spec.artifacts (the"
            " same claim and path the source experiment wrote to)",
            lambda s: (
                s.trial_template.init_from is None
                or s.trial_template.init_from.experiment is None
                or s.artifacts is not None
            ),
            ".trialTemplate.initFrom.experiment",
            kubernetes_only=True,
        ),
        Rule(
            f"!({_SEVERAL_OBJECTIVES}) || self.strategy.name in {list(MULTI_OBJECTIVE_STRATEGIES)!r}",
            f"several objectives need a strategy that searches a Pareto front: {', '.join(MULTI_OBJECTIVE_STRATEGIES)}",
            lambda s: not s.objective.multi or s.strategy.name in MULTI_OBJECTIVE_STRATEGIES,
            ".strategy.name",
        ),
        Rule(
            f"!({_SEVERAL_OBJECTIVES}) || !has(self.earlyStopping)",
            "earlyStopping judges one learning curve: it cannot be used with several objectives",
            lambda s: not s.objective.multi or s.early_stopping is None,
            ".earlyStopping",
        ),
        Rule(
            "!has(self.budget.maxGpuHours) || (has(self.trialTemplate.resources)"
            f" && has(self.trialTemplate.resources.limits) && '{GPU_RESOURCE}' in self.trialTemplate.resources.limits)"
            f" || (has(self.trialTemplate.template) && {trainer_cel(GPU_LIMIT_CEL, 'self.trialTemplate.template')})",
            f"maxGpuHours counts the GPUs each trial asks for: set trialTemplate.resources.limits['{GPU_RESOURCE}']"
            " (or the limit of the template's trainer container)",
            lambda s: (
                s.budget.max_gpu_hours is None
                or GPU_RESOURCE in s.trial_template.resources.limits
                or trainer_gpu_limit(s.trial_template) is not None
            ),
            ".budget.maxGpuHours",
        ),
        Rule(
            "!has(self.oneShot) || self.strategy.name != 'retrain'",
            "a one-shot search retrains its own top k: use another strategy for its search phase",
            lambda s: s.one_shot is None or s.strategy.name != "retrain",
            ".oneShot",
        ),
        Rule(
            "!has(self.oneShot) || ((has(self.searchSpace.cell) || has(self.searchSpace.layers))"
            " && (!has(self.searchSpace.hyperparameters) || self.searchSpace.hyperparameters.size() == 0)"
            " && !has(self.searchSpace.augmentation))",
            "a one-shot search shares weights across a cell and a layer chain only: no hyperparameters or augmentation",
            lambda s: (
                s.one_shot is None
                or (
                    (s.search_space.cell is not None or s.search_space.layers is not None)
                    and not s.search_space.hyperparameters
                    and s.search_space.augmentation is None
                )
            ),
            ".searchSpace",
        ),
        Rule(
            "!has(self.oneShot) || self.budget.maxTrials >= (has(self.oneShot.topK) ? self.oneShot.topK : 3)",
            "a one-shot search retrains its top k as Trials: maxTrials must be at least oneShot.topK",
            lambda s: s.one_shot is None or s.budget.max_trials >= s.one_shot.top_k,
            ".budget.maxTrials",
        ),
        Rule(
            "!has(self.oneShot) || has(self.artifacts)",
            "on Kubernetes a one-shot search keeps its supernet in the artifact store, where the evaluator"
            " reads it: set spec.artifacts",
            lambda s: s.one_shot is None or s.artifacts is not None,
            ".artifacts",
            kubernetes_only=True,
        ),
        Rule(
            f"!has(self.oneShot) || !({_SEVERAL_OBJECTIVES})",
            "a one-shot search retrains the top k of one ranking: give it one objective (constraints can bound"
            " the other metrics)",
            lambda s: s.one_shot is None or not s.objective.multi,
            ".objective.metrics",
        ),
        Rule(
            f"!has(self.oneShot) || (has(self.oneShot.command) && self.oneShot.command != {list(DEFAULT_COMMAND)!r})"
            f" || ((!has(self.objective) || ((!has(self.objective.metric) || self.objective.metric in {_EVALUATED})"
            f" && (!has(self.objective.metrics) || self.objective.metrics.all(m, m.name in {_EVALUATED}))"
            f" && (!has(self.objective.constraints) || self.objective.constraints.all(c, c.metric in {_EVALUATED})))))",
            f"the one-shot evaluator reports {', '.join(EVALUATOR_METRICS)} for each candidate: the objective and"
            " the constraints can name only these (or set oneShot.command to an evaluator that reports more)",
            lambda s: s.one_shot is None or _custom_evaluator(s.one_shot) or _evaluated(s.objective),
            ".objective",
        ),
        Rule(
            "!has(self.oneShot) || !has(self.earlyStopping)",
            "a one-shot search does not prune its retraining: leave earlyStopping out",
            lambda s: s.one_shot is None or s.early_stopping is None,
            ".earlyStopping",
        ),
    )

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
    artifacts: Artifacts | None = Field(
        None,
        json_schema_extra=immutable("artifacts"),
        description="Where trials keep weights and architectures on Kubernetes (locally: the results folder).",
    )
    early_stopping: EarlyStopping | None = Field(
        None,
        json_schema_extra=immutable("earlyStopping"),
        description="Stop unpromising trials early from their learning curves (median, asha or hyperband).",
    )
    queue_name: str | None = Field(
        None,
        min_length=1,
        max_length=kube.LABEL_MAX,
        pattern=kube.LABEL_VALUE,
        json_schema_extra=immutable("queueName"),
        description="Kueue LocalQueue of the trainer Jobs (label kueue.x-k8s.io/queue-name; created suspended,"
        " Kueue admits them within its quota); the same label on the pod template does the same. Ignored in"
        " local mode.",
    )
    one_shot: OneShot | None = Field(
        None,
        json_schema_extra=immutable("oneShot"),
        description="Weight-sharing search: train a supernet, search over it, retrain the top k (maxTrials) as Trials.",
    )

    def template_queue(self) -> str | None:
        """The queue the pod template's ``kueue.x-k8s.io/queue-name`` label names, if any."""
        template = self.trial_template.template
        return template.metadata.labels.get(kube.KUEUE_QUEUE_LABEL) if template is not None else None

    def queue(self) -> str | None:
        """The Kueue LocalQueue of the trainer Jobs: ``queueName``, or the pod template's queue label
        (the way Kueue users label their workloads); None when the trials are not queued."""
        return self.queue_name or self.template_queue()


class ObjectMeta(ApiModel):
    """Kubernetes object metadata: every field it has, so a misspelt one (``lables``) is refused, as the
    API server's strict field validation refuses it. Kubenas reads name, namespace, labels and
    annotations; the rest is kept but not checked."""

    name: str = Field(..., min_length=1, max_length=kube.SUBDOMAIN_MAX, pattern=kube.DNS1123_SUBDOMAIN)
    generate_name: str | None = None
    namespace: str | None = Field(None, max_length=kube.LABEL_MAX, pattern=kube.DNS1123_LABEL)
    self_link: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: Any = None
    deletion_timestamp: Any = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner_references: list[dict[str, Any]] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[dict[str, Any]] | None = None

    @field_validator("labels")
    @classmethod
    def _label_syntax(cls, labels: dict[str, str]) -> dict[str, str]:
        """The API server's own checks of any object's labels, so a bad label fails here too."""
        return kube.check_labels(labels)

    @field_validator("annotations")
    @classmethod
    def _annotation_keys(cls, annotations: dict[str, str]) -> dict[str, str]:
        for key in annotations:
            if not kube.qualified_name_ok(key.lower()):
                raise ValueError(f"annotation key {key!r} is not a qualified name")
        if sum(len(k) + len(v) for k, v in annotations.items()) > 256 * 1024:
            raise ValueError("annotations may hold at most 256 KiB in all")
        return annotations


#: what the operator appends to an experiment's name: the controller's Deployment, Service and Secret
#: (``<name>-controller``) and each Trial and Job (``<name>-<index:05d>``, index below maxTrials).
CONTROLLER_SUFFIX = "-controller"
TRIAL_SUFFIX_DIGITS = 5
#: the longest experiment name whose every child name is a valid DNS-1035 label (a Service's rule).
MAX_EXPERIMENT_NAME = kube.LABEL_MAX - max(len(CONTROLLER_SUFFIX), 1 + TRIAL_SUFFIX_DIGITS)


def experiment_name_ok(name: str) -> bool:
    """Whether every name derived from the experiment's is valid for its kind.

    ``<name>-controller`` names a Service, so it must be a DNS-1035 label: 63 characters, starting
    with a letter, no dots. The name itself is a label value on every child, and ``<name>-00042``
    names a Job whose name becomes its pods' ``job-name`` label value: 63 characters again.
    """
    return len(name) <= MAX_EXPERIMENT_NAME and kube.matches(kube.DNS1035_LABEL, name)


def trial_name_ok(name: str) -> bool:
    """A Trial's name is its Job's, which becomes a label value of the Job's pods: a DNS-1123 label."""
    return len(name) <= kube.LABEL_MAX and kube.matches(kube.DNS1123_LABEL, name)


ExperimentPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
TrialPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Infeasible", "Pruned"]


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
    waiting: int | None = Field(
        None, ge=0, description="Of the pending, with spec.queueName: queued in Kueue, not admitted (Job suspended)."
    )
    running: int = Field(0, ge=0, description="Training now.")
    succeeded: int = Field(0, ge=0, description="Finished with a reward.")
    failed: int = Field(0, ge=0, description="Failed (after retries) or bad candidates.")
    infeasible: int = Field(
        0, ge=0, description="Finished but violating a hard constraint, or diverged with no objective value."
    )
    pruned: int = Field(0, ge=0, description="Stopped early by the stopping rule, with a partial result.")
    total: int = Field(0, ge=0, description="All trials created.")


class BestTrial(ApiModel):
    """The best trial so far: small by design, the full history lives in Trial objects."""

    name: str = Field(..., description="Trial name.")
    architecture: dict[str, Any] = Field(default_factory=dict, description="Its decisions.")
    reward: float = Field(..., description="Its reward (the objective metric, constraints applied).")
    metrics: dict[str, float] = Field(default_factory=dict, description="Its reported metrics.")
    artifacts: ArtifactLocation | None = Field(None, description="Where its weights and architecture are.")


#: trials of the Pareto front an experiment's status lists (the front is kept whole by the core)
MAX_FRONT = 50


class ParetoTrial(ApiModel):
    """A trial of the Pareto front: no other succeeded trial is as good in every objective and better in one."""

    name: str = Field(..., description="Trial name.")
    values: dict[str, float] = Field(default_factory=dict, description="Its value of each objective metric.")


class GpuHours(ApiModel):
    """GPU time the trials have used (wall time times GPUs asked), against budget.maxGpuHours."""

    used: float = Field(..., ge=0, description="GPU-hours used by finished and running trials.")
    limit: float | None = Field(None, description="budget.maxGpuHours, if set.")


class SearchExperimentStatus(ApiModel):
    """Observed state of an experiment. Kept small; the history lives in Trials."""

    phase: ExperimentPhase = Field("Pending", description="Pending, Running, Succeeded or Failed.")
    conditions: list[Condition] = Field(default_factory=list, description="Standard conditions.")
    observed_generation: int | None = Field(None, description="Generation of the spec last acted on.")
    trials: TrialCounts = Field(default_factory=TrialCounts, description="Trials by phase.")
    best_trial: BestTrial | None = Field(None, description="The best trial so far.")
    best_reward: float | None = Field(None, description="Reward of the best trial (for printer columns).")
    pareto_front: list[ParetoTrial] | None = Field(
        None,
        max_length=MAX_FRONT,
        description=f"With several objectives: the non-dominated trials (at most {MAX_FRONT}, spread along the front).",
    )
    pareto_size: int | None = Field(None, ge=0, description="Non-dominated trials in all (paretoFront may show fewer).")
    gpu_hours: GpuHours | None = Field(None, description="GPU-hours used (and the limit), when trials ask for GPUs.")
    progress: str | None = Field(None, description="Trials finished out of maxTrials, e.g. 12/50.")
    start_time: datetime | None = Field(None, description="When the search started.")
    completion_time: datetime | None = Field(None, description="When it finished.")
    message: str | None = Field(None, description="Why it is in its phase.")
    one_shot: OneShotStatus | None = Field(None, description="A one-shot search's phase and the record of each phase.")


class SearchExperiment(ApiModel):
    """A neural architecture search run by Kubenas."""

    RULES = (
        Rule(
            f"self.metadata.name.size() <= {MAX_EXPERIMENT_NAME}"
            f" && self.metadata.name.matches(r'{kube.DNS1035_LABEL}')",
            f"metadata.name must be a DNS-1035 label of at most {MAX_EXPERIMENT_NAME} characters (lower case"
            f" letters, digits and '-', starting with a letter): the controller Service is <name>{CONTROLLER_SUFFIX}",
            lambda e: experiment_name_ok(e.metadata.name),
            ".metadata.name",
        ),
    )

    api_version: Literal["kubenas.io/v1alpha1"] = Field(API_VERSION, description="kubenas.io/v1alpha1")
    kind: Literal["SearchExperiment"] = Field("SearchExperiment", description="SearchExperiment")
    metadata: ObjectMeta
    spec: SearchExperimentSpec
    status: SearchExperimentStatus | None = None


class TrialSpec(ApiModel):
    """One candidate architecture to train, as the strategy proposed it."""

    experiment: str = Field(
        ...,
        max_length=MAX_EXPERIMENT_NAME,
        pattern=kube.DNS1035_LABEL,
        description="Name of the owning SearchExperiment.",
    )
    index: int = Field(
        ..., ge=0, le=99999, description="Position in the order the strategy proposed candidates (0-based)."
    )
    architecture: dict[str, Any] = Field(..., max_length=1024, description="Decision name to chosen value.")
    architecture_id: str = Field(..., max_length=65536, description="Canonical string of the architecture.")
    seed: int = Field(0, ge=0, description="Seed handed to the trainer.")
    parents: list[Annotated[int, Field(ge=0, le=99999)]] = Field(
        default_factory=list,
        max_length=16,
        description="Indexes of the trials of this experiment the candidate was derived from (evolution's parent,"
        " the progressive search's nearest evaluated architecture); empty when it was drawn anew.",
    )


#: points of a learning curve kept in a Trial's status (an epoch each): bounds the object's size.
MAX_CURVE_POINTS = 128


class CurvePoint(ApiModel):
    """One point of a trial's learning curve."""

    step: int = Field(..., ge=0, description="The step (epoch) the trial reported.")
    value: float = Field(..., description="The objective metric at that step.")


class TrialStatus(ApiModel):
    """Outcome of a trial, plus the bookkeeping that lets the strategy be replayed exactly."""

    phase: TrialPhase = Field(
        "Pending", description="Pending, Running, Succeeded, Failed, Infeasible or Pruned (stopped early)."
    )
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
    artifacts: ArtifactLocation | None = Field(
        None, description="Where the trial's weights, architecture and per-epoch metrics are."
    )
    curve: list[CurvePoint] = Field(
        default_factory=list,
        max_length=MAX_CURVE_POINTS,
        description=f"Learning curve: the objective metric at each step reported (the first {MAX_CURVE_POINTS}).",
    )
    gpu_seconds: float | None = Field(
        None, ge=0, description="GPU time the trial used: its wall time times the GPUs it asked for, in seconds."
    )


class Trial(ApiModel):
    """One candidate of a SearchExperiment, trained by one Job."""

    RULES = (
        Rule(
            f"self.metadata.name.size() <= {kube.LABEL_MAX} && self.metadata.name.matches(r'{kube.DNS1123_LABEL}')",
            f"metadata.name must be a DNS-1123 label of at most {kube.LABEL_MAX} characters: it names the trial's Job",
            lambda t: trial_name_ok(t.metadata.name),
            ".metadata.name",
        ),
    )

    api_version: Literal["kubenas.io/v1alpha1"] = Field(API_VERSION, description="kubenas.io/v1alpha1")
    kind: Literal["Trial"] = Field("Trial", description="Trial")
    metadata: ObjectMeta
    spec: TrialSpec
    status: TrialStatus | None = None

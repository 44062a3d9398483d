"""The full pod template of a trial and the artifact store: Kubernetes' own PodSpec, plus the contract's rules.

``trialTemplate.template`` is a pod template as Jobs take it (labels, annotations, a core/v1 PodSpec
with its real schema, see ``kubenas.api.podspec``), so volumes, serviceAccountName, affinity,
imagePullSecrets, initContainers and security settings reach the trainer pod. The short form
(image, command, args, env, resources, nodeSelector, tolerations...) stays as sugar and is merged
into it by the operator, which also adds the trial contract (environment, termination message,
outputs mount) to the *trainer container*: the one named ``trainer``, else the first.

What would break that contract is refused at admission by the rules below (CEL for the API server,
Python for ``kubenas validate``, side by side as :class:`~kubenas.api.base.Rule` wants): a template
without containers, a trainer without an image, a field set both in the short form and on the
trainer container, a restart policy other than Never, a volume named like the operator's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError

from kubenas.api import kube, podspec
from kubenas.api.base import RULE_ERROR, ApiModel, Rule

#: the container that receives the trial contract, when the template has one by that name
TRAINER_CONTAINER = "trainer"
#: volume and mount the operator adds to every trainer pod (an emptyDir, or the artifact store's claim)
OUTPUT_VOLUME = "kubenas-output"
OUTPUT_MOUNT = "/kubenas/output"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
#: marks a node that the CRD generator copies as it is (already a structural schema)
VERBATIM = "x-kubenas-verbatim"
_PATH_SEGMENT = r"[A-Za-z0-9._-]+"
ARTIFACT_PATH = rf"^({_PATH_SEGMENT}(/{_PATH_SEGMENT})*)?$"


def _check_pod_spec(value: dict[str, Any]) -> dict[str, Any]:
    """The upstream schema's verdict, reported at the offending field (as the API server reports it)."""
    found = podspec.problems(podspec.schema(), value)
    if found:
        path, message = found[0]
        raise PydanticCustomError(RULE_ERROR, "{message}", {"message": message, "field": path})
    return value


#: a core/v1 PodSpec: a plain dict checked against the shipped upstream schema, which the CRD carries
PodSpec = Annotated[
    dict[str, Any],
    AfterValidator(_check_pod_spec),
    WithJsonSchema({**podspec.schema(), VERBATIM: True}),
]


def trainer_container(pod_spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The container that runs the trainer: the one named ``trainer``, else the first (None when there is none)."""
    containers = list(pod_spec.get("containers") or [])
    named = [c for c in containers if c.get("name") == TRAINER_CONTAINER]
    return named[0] if named else (containers[0] if containers else None)


class PodTemplateMeta(ApiModel):
    """Labels and annotations of the trainer pod (the operator adds its own labels to them)."""

    labels: dict[str, str] = Field(default_factory=dict, max_length=64, description="Labels of the trainer pod.")
    annotations: dict[str, str] = Field(
        default_factory=dict, max_length=64, description="Annotations of the trainer pod."
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return kube.check_labels(labels)


class PodTemplate(ApiModel):
    """Kubernetes' pod template (as in a Job): metadata and a core/v1 PodSpec."""

    metadata: PodTemplateMeta = Field(default_factory=PodTemplateMeta, description="Labels and annotations.")
    spec: PodSpec = Field(..., description="A core/v1 PodSpec; the trainer container is named trainer, else first.")


# -- rules of the trial template (the model lives in v1alpha1.TrialTemplate) ----------------------
_T = "self.template.spec.containers"


def trainer_cel(condition: str, template: str = "self.template") -> str:
    """CEL: ``condition`` (over ``c``) holds for the trainer container (named trainer, else the first) of
    the pod template at ``template`` (``self.trialTemplate.template`` for a rule above the trial template)."""
    containers = f"{template}.spec.containers"
    named = f"{containers}.exists(c, c.name == '{TRAINER_CONTAINER}')"
    first = condition.replace("c.", f"{containers}[0].")
    return (
        f"({named} ? {containers}.exists(c, c.name == '{TRAINER_CONTAINER}' && {condition})"
        f" : (size({containers}) > 0 && {first}))"
    )


def _trainer(t: Any) -> dict[str, Any]:
    return (trainer_container(t.template.spec) or {}) if t.template is not None else {}


def _conflict(short_cel: str, key: str, short_set: Any, what: str) -> Rule:
    """The short form and the trainer container must not both set ``key``: neither would win visibly."""
    return Rule(
        f"!has(self.template) || !({short_cel}) || !{trainer_cel(f'has(c.{key})')}",
        f"{what} is set both in the short form and on the template's trainer container: set it in one place",
        lambda t: t.template is None or not short_set(t) or key not in _trainer(t),
        ".template.spec.containers",
    )


def _pod_conflict(short_cel: str, key: str, short_set: Any) -> Rule:
    return Rule(
        f"!has(self.template) || !({short_cel}) || !has(self.template.spec.{key})",
        f"{key} is set both in the short form and in template.spec: set it in one place",
        lambda t: t.template is None or not short_set(t) or key not in t.template.spec,
        f".template.spec.{key}",
    )


#: the trainer container's GPU limit is given (CEL over ``c``, the container)
GPU_LIMIT_CEL = "has(c.resources) && has(c.resources.limits) && 'nvidia.com/gpu' in c.resources.limits"


def trainer_gpu_limit(t: Any) -> Any:
    """The template trainer container's ``nvidia.com/gpu`` limit as written, None when it has none."""
    limits = (_trainer(t).get("resources") or {}).get("limits") or {}
    return limits.get("nvidia.com/gpu")


def _trainer_image_ok(t: Any) -> bool:
    return t.image is not None or bool(_trainer(t).get("image"))


TEMPLATE_RULES: tuple[Rule, ...] = (
    Rule(
        f"!has(self.template) || size({_T}) > 0",
        "template.spec.containers must hold the trainer container (named trainer, else the first)",
        lambda t: t.template is None or bool(t.template.spec.get("containers")),
        ".template.spec.containers",
    ),
    Rule(
        f"has(self.image) || (has(self.template) && {trainer_cel('has(c.image)')})",
        "image is required on Kubernetes (local mode ignores it): set trialTemplate.image or the image of the"
        " template's trainer container",
        _trainer_image_ok,
        ".image",
        kubernetes_only=True,
    ),
    _conflict("has(self.image)", "image", lambda t: t.image is not None, "image"),
    _conflict("true", "command", lambda t: True, "command"),
    _conflict("has(self.args) && size(self.args) > 0", "args", lambda t: bool(t.args), "args"),
    _conflict("has(self.workingDir)", "workingDir", lambda t: t.working_dir is not None, "workingDir"),
    _conflict(
        "has(self.resources) && ((has(self.resources.requests) && size(self.resources.requests) > 0)"
        " || (has(self.resources.limits) && size(self.resources.limits) > 0))",
        "resources",
        lambda t: bool(t.resources.requests or t.resources.limits),
        "resources",
    ),
    _pod_conflict("has(self.nodeSelector) && size(self.nodeSelector) > 0", "nodeSelector", lambda t: t.node_selector),
    _pod_conflict("has(self.tolerations) && size(self.tolerations) > 0", "tolerations", lambda t: t.tolerations),
    _pod_conflict("has(self.priorityClassName)", "priorityClassName", lambda t: t.priority_class_name is not None),
    Rule(
        "!has(self.template) || !has(self.template.spec.restartPolicy) || self.template.spec.restartPolicy == 'Never'",
        "template.spec.restartPolicy must be Never: Kubenas counts and judges each attempt of a trial",
        lambda t: t.template is None or t.template.spec.get("restartPolicy", "Never") == "Never",
        ".template.spec.restartPolicy",
    ),
    Rule(
        "!has(self.template) || !"
        + trainer_cel(f"has(c.terminationMessagePath) && c.terminationMessagePath != '{TERMINATION_MESSAGE_PATH}'"),
        f"the trainer's terminationMessagePath is the trial contract's ({TERMINATION_MESSAGE_PATH}): the result"
        " travels there",
        lambda t: _trainer(t).get("terminationMessagePath", TERMINATION_MESSAGE_PATH) == TERMINATION_MESSAGE_PATH,
        ".template.spec.containers",
    ),
    Rule(
        "!has(self.template) || !has(self.template.spec.volumes)"
        f" || !self.template.spec.volumes.exists(v, v.name == '{OUTPUT_VOLUME}')",
        f"the volume name {OUTPUT_VOLUME} is the operator's (the trial's outputs mount)",
        lambda t: (
            t.template is None or all(v.get("name") != OUTPUT_VOLUME for v in t.template.spec.get("volumes") or [])
        ),
        ".template.spec.volumes",
    ),
)


# -- the artifact store ------------------------------------------------------------------------------
class Artifacts(ApiModel):
    """Where each trial keeps its weights, architecture and per-epoch metrics.

    On Kubernetes a PersistentVolumeClaim in the experiment's namespace: the trainer pod mounts it
    at ``/kubenas/output`` and writes into ``<path>/<experiment>/<trial>``. Locally the results
    folder holds them (``trials/<trial>/output``) and this setting is not needed.
    """

    RULES = (
        Rule(
            r"!has(self.path) || !self.path.matches(r'(^|/)\.\.?(/|$)')",
            "path must not hold '.' or '..' segments: it is a folder inside the claim",
            lambda a: not any(s in (".", "..") for s in a.path.split("/")),
            ".path",
        ),
    )

    persistent_volume_claim: str = Field(
        ...,
        min_length=1,
        max_length=kube.SUBDOMAIN_MAX,
        pattern=kube.DNS1123_SUBDOMAIN,
        description="Name of the PersistentVolumeClaim (in the experiment's namespace) that holds the artifacts.",
    )
    path: str = Field(
        "",
        max_length=1024,
        pattern=ARTIFACT_PATH,
        description="Folder inside the claim; each trial writes into <path>/<experiment>/<trial>.",
    )

    def trial_path(self, experiment: str, trial: str) -> str:
        """The trial's folder inside the claim."""
        return "/".join(p for p in (self.path, experiment, trial) if p)


class ArtifactLocation(ApiModel):
    """Where one trial's artifacts are: a folder inside a PersistentVolumeClaim."""

    persistent_volume_claim: str = Field(..., description="The claim holding the artifacts.")
    path: str = Field(..., description="The trial's folder inside the claim (model.pt, architecture.json...).")

"""Why an experiment's pod waits to start, looked at when it has waited too long.

Two causes never end by themselves, and Kubernetes reports both only as a pod that waits, so an
experiment would show Running for ever:

- **a container that cannot be created**: a Secret or ConfigMap the template references that does
  not exist (``CreateContainerConfigError``), an image name that cannot be parsed or may not be
  pulled (``InvalidImageName``, ``ErrImageNeverPull``), an image that cannot be pulled
  (``ErrImagePull``, ``ImagePullBackOff``: given ``PULL_GRACE_S``, since a registry may be away for a
  while and the kubelet retries). The kubelet's reason and message are on the pod: the experiment
  fails ``PodCannotStart`` quoting them, naming the container and the field to look at.
- **a claim that does not exist**, below.

A pod whose PersistentVolumeClaim does not exist is created all the same and then stays Pending: the
scheduler says so on the pod alone (``persistentvolumeclaim "x" not found``), so an experiment with a
typo in a claim's name would wait for ever, showing Running. Once a pod of the experiment has waited
past the grace period (a claim may be created just after the experiment: ``kubectl apply -f dir/``
applies in any order), the operator looks its claims up and fails the experiment when one is missing,
naming the field that holds it. A claim that exists but is not bound yet (a provisioner at work, no
volume free) keeps the pods waiting, as Kubernetes does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.operator.failures import ExperimentLog, Fatal
from kubenas.operator.grace import GRACE_S, Gate, missing
from kubenas.operator.kube import KubeApi
from kubenas.operator.views import PodView, parse_time

#: waiting reasons of a container that will not start without a change to the spec or the cluster
CANNOT_START = frozenset({"CreateContainerConfigError", "InvalidImageName", "ErrImageNeverPull"})
#: image pulls that failed: the kubelet retries them, so they count only after PULL_GRACE_S
PULL_FAILED = frozenset({"ErrImagePull", "ImagePullBackOff"})
PULL_GRACE_S = 300.0
#: where to look, by reason
FIELDS = {
    "CreateContainerConfigError": "spec.trialTemplate (a Secret or ConfigMap its pods reference)",
    "InvalidImageName": "spec.trialTemplate.image",
    "ErrImageNeverPull": "spec.trialTemplate (imagePullPolicy Never, and the image is not on the node)",
    "ErrImagePull": "spec.trialTemplate.image (or its imagePullSecrets)",
    "ImagePullBackOff": "spec.trialTemplate.image (or its imagePullSecrets)",
}


def claims(spec: SearchExperimentSpec) -> list[tuple[str, str]]:
    """(field, claim name) of every PersistentVolumeClaim a trainer pod of ``spec`` mounts."""
    found: list[tuple[str, str]] = []
    if spec.artifacts is not None:
        found.append(("spec.artifacts.persistentVolumeClaim", spec.artifacts.persistent_volume_claim))
    template = spec.trial_template.template
    volumes = (template.spec.get("volumes") or []) if template is not None else []
    for i, volume in enumerate(volumes):
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName") if isinstance(volume, dict) else None
        if isinstance(claim, str) and claim:
            found.append((f"spec.trialTemplate.template.spec.volumes[{i}].persistentVolumeClaim.claimName", claim))
    return found


def waits(pods: Iterable[PodView], now: datetime) -> list[tuple[PodView, float]]:
    """The pods waiting to start (not running, not ended, not going), each with how long it has waited."""
    return [
        (p, (now - created).total_seconds())
        for p in pods
        if p.running_since is None and p.terminated is None and not p.deleting
        if (created := parse_time(p.created)) is not None
    ]


def longest_wait(pods: Iterable[PodView], now: datetime) -> tuple[str, float] | None:
    """The pod that has waited longest to start and for how long."""
    waiting = waits(pods, now)
    if not waiting:
        return None
    pod, seconds = max(waiting, key=lambda w: w[1])
    return pod.name, seconds


def cannot_start(pods: Iterable[PodView], now: datetime, grace: float = GRACE_S) -> str | None:
    """Why a pod that has waited past the grace cannot start (its container, the kubelet's reason and
    message, the field to look at), or None."""
    for pod, seconds in waits(pods, now):
        if pod.waiting is None or seconds < grace:
            continue
        container, reason, message = pod.waiting
        if reason in CANNOT_START or (reason in PULL_FAILED and seconds >= PULL_GRACE_S):
            return (
                f"{FIELDS[reason]}: the pod {pod.name} cannot start its container {container!r} "
                f"({reason}: {message or 'no message'}); it has waited {seconds:.0f}s"
            )
    return None


class StartCheck:
    """Looks at why an experiment's pods wait, once one has waited past the grace period to start
    (:class:`~kubenas.operator.grace.Gate`): their containers' waiting reasons, then the claims."""

    def __init__(self, api: KubeApi, namespace: str, log: ExperimentLog, wake_later: Callable[[float], None]) -> None:
        self.api = api
        self.namespace = namespace
        self.log = log
        self.gate = Gate(wake_later)

    async def __call__(self, spec: SearchExperimentSpec, pods: Iterable[PodView], now: datetime) -> None:
        """Raise Fatal (``PodCannotStart``) when a pod that has waited past the grace cannot start,
        (``ClaimNotFound``) when one has and a claim is missing."""
        pods = list(pods)
        waited = longest_wait(pods, now)
        if waited is None:
            return
        pod, seconds = waited
        if not self.gate.due(seconds):
            return
        problem = cannot_start(pods, now, self.gate.grace)
        if problem is not None:
            raise Fatal("PodCannotStart", problem)
        mounted = claims(spec)
        for field, claim in mounted:
            if await missing(self.api, "v1", "PersistentVolumeClaim", self.namespace, claim, self.log):
                raise Fatal(
                    "ClaimNotFound",
                    f"{field}: no PersistentVolumeClaim {claim!r} in namespace {self.namespace};"
                    f" the pod {pod} has waited {seconds:.0f}s for it",
                )

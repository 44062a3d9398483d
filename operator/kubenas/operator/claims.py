"""The claims an experiment's pods mount, looked up when a pod waits too long to start.

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
from kubenas.operator.grace import Gate, missing
from kubenas.operator.kube import KubeApi
from kubenas.operator.views import PodView, parse_time


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


def longest_wait(pods: Iterable[PodView], now: datetime) -> tuple[str, float] | None:
    """The pod that has waited longest to start (not running, not ended, not going) and for how long."""
    waiting = [
        (p.name, (now - created).total_seconds())
        for p in pods
        if p.running_since is None and p.terminated is None and not p.deleting
        if (created := parse_time(p.created)) is not None
    ]
    return max(waiting, key=lambda w: w[1]) if waiting else None


class ClaimCheck:
    """Looks an experiment's claims up when one of its pods has waited past the grace period to start
    (:class:`~kubenas.operator.grace.Gate`)."""

    def __init__(self, api: KubeApi, namespace: str, log: ExperimentLog, wake_later: Callable[[float], None]) -> None:
        self.api = api
        self.namespace = namespace
        self.log = log
        self.gate = Gate(wake_later)

    async def __call__(self, spec: SearchExperimentSpec, pods: Iterable[PodView], now: datetime) -> None:
        """Raise Fatal (``ClaimNotFound``) when a pod has waited past the grace and a claim is missing."""
        mounted = claims(spec)
        waited = longest_wait(pods, now) if mounted else None
        if waited is None:
            return
        pod, seconds = waited
        if not self.gate.due(seconds):
            return
        for field, claim in mounted:
            if await missing(self.api, "v1", "PersistentVolumeClaim", self.namespace, claim, self.log):
                raise Fatal(
                    "ClaimNotFound",
                    f"{field}: no PersistentVolumeClaim {claim!r} in namespace {self.namespace};"
                    f" the pod {pod} has waited {seconds:.0f}s for it",
                )

"""What a local trial process takes from the trial template, the full pod template included.

On a cluster the trainer container of ``trialTemplate.template`` brings its own environment,
arguments and working directory; the short form fills in what it leaves out (admission refuses a
field set in both places). Local mode starts the same trainer, so it reads the same fields the same
way: a template written for the cluster runs on one machine unchanged. Only what needs the cluster
cannot follow: a variable whose value comes from a Secret, a ConfigMap or the pod (``valueFrom``) is
left out, and the run says which.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubenas.api.template import trainer_container
from kubenas.api.v1alpha1 import TrialTemplate


@dataclass(frozen=True)
class Launch:
    """The environment, arguments and working directory of a local trial process."""

    env: dict[str, str]
    args: list[str]
    working_dir: str | None
    #: variables of the template's trainer container set from the cluster (``valueFrom``): not set locally
    cluster_only: tuple[str, ...] = ()


def launch_of(template: TrialTemplate) -> Launch:
    """The short form over the template's trainer container, as the trainer pod gets them."""
    container = (trainer_container(template.template.spec) if template.template is not None else None) or {}
    env: dict[str, str] = {}
    cluster_only: list[str] = []
    for var in container.get("env") or []:
        if "valueFrom" in var:
            cluster_only.append(var["name"])
        else:
            env[var["name"]] = str(var.get("value", ""))
    env.update({e.name: e.value for e in template.env})  # on the pod the short form's come first too
    args = list(template.args) or [str(a) for a in container.get("args") or []]
    return Launch(env, args, template.working_dir or container.get("workingDir"), tuple(cluster_only))

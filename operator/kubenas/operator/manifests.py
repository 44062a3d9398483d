"""Pure builders of every object the operator creates: plain dicts in, plain dicts out.

Nothing here talks to the API server, so each manifest can be read and checked in a unit test. The
builders take the *accepted* spec (the one the experiment started with, plus the budget edits the
operator allowed), never the live object, so a refused edit cannot leak into new children.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubenas.api.settings import settings_json
from kubenas.api.template import OUTPUT_MOUNT, OUTPUT_VOLUME, trainer_container
from kubenas.api.v1alpha1 import API_VERSION, Resources, SearchExperimentSpec, TrialTemplate
from kubenas.controller.progress import trial_token
from kubenas.core.errors import SpecError
from kubenas.core.gpus import gpus_of as gpus_of  # re-exported: the GPU-seconds metric counts with it
from kubenas.core.gpus import launcher_command, trial_gpus
from kubenas.core.lineage import CheckpointFile, start_weights
from kubenas.core.records import trial_seed
from kubenas.core.space import Architecture
from kubenas.operator import names

KUEUE_QUEUE_LABEL = names.KUEUE_QUEUE_LABEL
#: shared memory for the processes of a multi-GPU trial (NCCL's buffers; a container's own is 64 MiB)
SHM_VOLUME = "kubenas-shm"


@dataclass(frozen=True)
class Owner:
    """The object that owns a child: garbage collection deletes the child with it."""

    api_version: str
    kind: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class ExperimentRef:
    """What the builders need to know of the experiment object itself."""

    namespace: str
    name: str
    uid: str

    @property
    def owner(self) -> Owner:
        return Owner(API_VERSION, "SearchExperiment", self.name, self.uid)


def _meta(name: str, namespace: str, labels: Mapping[str, str], owner: Owner) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(labels), "ownerReferences": [owner.reference()]}


def restricted_pod_security() -> dict[str, Any]:
    """Pod-level settings of the Pod Security "restricted" profile (images must run as a non-root uid)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security() -> dict[str, Any]:
    """Container-level settings of the "restricted" profile."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(resources: Resources) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if resources.requests:
        out["requests"] = {k: str(v) for k, v in resources.requests.items()}
    if resources.limits:
        out["limits"] = {k: str(v) for k, v in resources.limits.items()}
    return out


def trainer_image(spec: SearchExperimentSpec) -> str:
    """The trial image, required on Kubernetes (local mode ignores it): the short form's, else the template's."""
    template = spec.trial_template
    image = template.image
    if image is None and template.template is not None:
        image = (trainer_container(template.template.spec) or {}).get("image")
    if not image:
        raise SpecError("spec.trialTemplate.image", "is required on Kubernetes")
    return str(image)


def controller_image(spec: SearchExperimentSpec) -> str:
    """The controller runs from its own image if given, else from the trial image."""
    return spec.controller.image or trainer_image(spec)


# -- the controller ----------------------------------------------------------------------------
def controller_secret(exp: ExperimentRef, token: str, accepted_spec: SearchExperimentSpec) -> dict[str, Any]:
    """The controller's bearer token and the spec the experiment runs with.

    The accepted spec lives here rather than on the experiment because a refused edit of the
    experiment must not change what the operator builds; the Secret is written only by the operator.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(
            names.controller_name(exp.name), exp.namespace, names.controller_selector(exp.name), exp.owner
        ),
        "type": "Opaque",
        "stringData": {names.TOKEN_KEY: token, names.SPEC_KEY: spec_json(accepted_spec)},
    }


def spec_json(spec: SearchExperimentSpec) -> str:
    return json.dumps(spec.to_wire(), sort_keys=True, separators=(",", ":"))


def controller_service(exp: ExperimentRef) -> dict[str, Any]:
    """A headless Service: it exists for its EndpointSlice (the pod IP), never for a ClusterIP."""
    return headless_service(exp, names.controller_name(exp.name), names.controller_selector(exp.name))


def headless_service(exp: ExperimentRef, name: str, selector: Mapping[str, str]) -> dict[str, Any]:
    """A headless Service named ``name`` over the pods ``selector`` picks, on the controller port's name."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, exp.namespace, selector, exp.owner),
        "spec": {
            "clusterIP": "None",
            "selector": selector,
            "ports": [
                {
                    "name": names.CONTROLLER_PORT_NAME,
                    "port": names.CONTROLLER_PORT,
                    "targetPort": names.CONTROLLER_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def controller_deployment(exp: ExperimentRef, spec: SearchExperimentSpec, replicas: int = 1) -> dict[str, Any]:
    """One controller pod holding the strategy; Recreate so two never run at once."""
    name = names.controller_name(exp.name)
    selector = names.controller_selector(exp.name)
    labels = {**names.experiment_labels(exp.name), **selector}
    container: dict[str, Any] = {
        "name": names.CONTROLLER_CONTAINER,
        "image": controller_image(spec),
        "command": ["kubenas", "controller", "serve"],
        "args": ["--port", str(names.CONTROLLER_PORT)],
        "env": [
            {"name": "KUBENAS_EXPERIMENT", "value": exp.name},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {
                "name": names.TOKEN_ENV,
                "valueFrom": {"secretKeyRef": {"name": name, "key": names.TOKEN_KEY}},
            },
        ],
        "ports": [{"name": names.CONTROLLER_PORT_NAME, "containerPort": names.CONTROLLER_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": names.CONTROLLER_PORT_NAME},
            "periodSeconds": 2,
        },
        "securityContext": restricted_container_security(),
    }
    resources = _resources(spec.controller.resources)
    if resources:
        container["resources"] = resources
    pod_spec = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(),
        "containers": [container],
    }
    return recreate_deployment(exp, name, selector, {"metadata": {"labels": labels}, "spec": pod_spec}, replicas)


def recreate_deployment(
    exp: ExperimentRef, name: str, selector: Mapping[str, str], pod: Mapping[str, Any], replicas: int = 1
) -> dict[str, Any]:
    """A Deployment of ``replicas`` pods (``pod``: their template) replaced all at once (Recreate), so
    pods of an old template never run beside a new one's (the controller: never two at once)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, exp.namespace, pod["metadata"]["labels"], exp.owner),
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(selector)},
            "template": dict(pod),
        },
    }


# -- trials ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProgressChannel:
    """Where trainers post their epochs (the controller's addresses, tried in order) and the secret
    each trial's credential is derived from (the controller token; a trial gets only its HMAC)."""

    urls: tuple[str, ...]
    secret: str

    @classmethod
    def of(cls, exp: ExperimentRef, pod: tuple[str, int] | None, secret: str) -> ProgressChannel:
        """The controller pod's address as the operator reaches it (IP, port), then its Service's DNS
        name, which follows a restarted controller to its new IP where the cluster has DNS."""
        urls = [f"http://{pod[0]}:{pod[1]}"] if pod else []
        urls.append(f"http://{names.controller_name(exp.name)}.{exp.namespace}.svc:{names.CONTROLLER_PORT}")
        return cls(tuple(urls), secret)

    def env(self, trial: str) -> dict[str, str]:
        return {names.PROGRESS_URL_ENV: " ".join(self.urls), names.PROGRESS_TOKEN_ENV: trial_token(self.secret, trial)}


def trial_object(
    exp: ExperimentRef,
    spec: SearchExperimentSpec,
    index: int,
    architecture: Architecture,
    architecture_id: str,
    parents: Sequence[int] = (),
) -> dict[str, Any]:
    """The Trial for the ``index``-th candidate. Its status is written later, by the status subresource."""
    name = names.trial_name(exp.name, index)
    return {
        "apiVersion": API_VERSION,
        "kind": "Trial",
        "metadata": _meta(name, exp.namespace, names.experiment_labels(exp.name), exp.owner),
        "spec": {
            "experiment": exp.name,
            "index": index,
            "architecture": dict(architecture),
            "architectureId": architecture_id,
            "seed": trial_seed(spec.strategy.seed, index),
            **({"parents": list(parents)} if parents else {}),
        },
    }


def pod_failure_policy() -> dict[str, Any]:
    """Never retry a bad candidate (exit 3) or a refused configuration (exit 2); never count a disruption
    (eviction, preemption) as a try."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": names.TRAINER_CONTAINER,
                    "operator": "In",
                    "values": sorted(names.FINAL_EXIT_CODES),
                },
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def output_dir(spec: SearchExperimentSpec, experiment: str, trial: str) -> str:
    """The trial's KUBENAS_OUTPUT_DIR in its pod: the outputs mount, or the trial's folder of the artifact store."""
    if spec.artifacts is None:
        return OUTPUT_MOUNT
    return f"{OUTPUT_MOUNT}/{spec.artifacts.trial_path(experiment, trial)}"


def trial_artifacts(spec: SearchExperimentSpec, experiment: str, trial: str) -> dict[str, str] | None:
    """The Trial status's ``artifacts`` (camelCase), or None without an artifact store.

    Pure: the reconciler writes it into the Trial's status with the result, and copies the best
    trial's into the experiment's ``status.bestTrial.artifacts``.
    """
    if spec.artifacts is None:
        return None
    return {
        "persistentVolumeClaim": spec.artifacts.persistent_volume_claim,
        "path": spec.artifacts.trial_path(experiment, trial),
    }


def trial_env(
    experiment: str, spec: SearchExperimentSpec, trial: Mapping[str, Any], channel: ProgressChannel | None = None
) -> list[dict[str, str]]:
    """The trial contract's environment (docs/trial-contract.md), with the push channel when given,
    then the template's own variables."""
    t_spec = trial["spec"]
    contract = {
        "KUBENAS_ARCHITECTURE": json.dumps(t_spec["architecture"]),
        "KUBENAS_ARCHITECTURE_ID": t_spec["architectureId"],
        "KUBENAS_SEARCH_SPACE": json.dumps(spec.search_space.to_wire(), sort_keys=True),
        "KUBENAS_SETTINGS": settings_json(spec.trial_template.settings),
        "KUBENAS_TRIAL": trial["metadata"]["name"],
        "KUBENAS_EXPERIMENT": experiment,
        "KUBENAS_SEED": str(t_spec["seed"]),
        "KUBENAS_RESULT_FILE": names.TERMINATION_MESSAGE_PATH,
        "KUBENAS_OUTPUT_DIR": output_dir(spec, experiment, trial["metadata"]["name"]),
    }
    start = start_weights(spec, experiment, t_spec.get("parents") or ())
    if isinstance(start, CheckpointFile):
        contract["KUBENAS_INIT_WEIGHTS"] = start.path
    elif start is not None and spec.artifacts is not None:  # admission demands the store for a trial's weights
        contract["KUBENAS_INIT_WEIGHTS"] = output_dir(spec, start.experiment, start.trial)
    if channel is not None:
        contract |= channel.env(trial["metadata"]["name"])
    env = [{"name": k, "value": v} for k, v in contract.items()]
    env += [{"name": e.name, "value": e.value} for e in spec.trial_template.env if e.name not in contract]
    return env


def _tolerations(template: TrialTemplate) -> list[dict[str, Any]]:
    return [t.to_wire() for t in template.tolerations]


def _output_volume(spec: SearchExperimentSpec) -> dict[str, Any]:
    if spec.artifacts is None:
        return {"name": OUTPUT_VOLUME, "emptyDir": {}}
    return {"name": OUTPUT_VOLUME, "persistentVolumeClaim": {"claimName": spec.artifacts.persistent_volume_claim}}


def _add_shared_memory(pod_spec: dict[str, Any], container: dict[str, Any]) -> None:
    """A memory-backed /dev/shm for the trial's processes, unless the template mounts one itself."""
    if any(m.get("mountPath") == "/dev/shm" for m in container["volumeMounts"]):
        return
    if any(v.get("name") == SHM_VOLUME for v in pod_spec["volumes"]):
        return
    pod_spec["volumes"].append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}})
    container["volumeMounts"].append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})


def trainer_pod(
    exp: ExperimentRef, spec: SearchExperimentSpec, trial: Mapping[str, Any], channel: ProgressChannel | None = None
) -> dict[str, Any]:
    """The trainer pod template: the user's pod template, the short form merged in, the trial contract added.

    Admission refused every field set in both places, so the merge has no winner to pick. The
    contract always applies to the trainer container (named ``trainer``, else the first, which is
    then named ``trainer``: Kubenas reads its exit code and termination message by that name):
    the KUBENAS_* environment (the template's own variables follow, never overriding it), the
    termination message file and the outputs mount. Security settings the template leaves out are
    the "restricted" profile's.
    """
    template = spec.trial_template
    user = template.template
    pod_spec: dict[str, Any] = copy.deepcopy(user.spec) if user is not None else {}
    containers = pod_spec.setdefault("containers", [])
    container = trainer_container(pod_spec)
    if container is None:
        container = {}
        containers.append(container)
    container["name"] = names.TRAINER_CONTAINER
    container["image"] = trainer_image(spec)
    gpus = trial_gpus(template).count
    container["command"] = launcher_command(template.command, gpus)  # torchrun, one process per GPU, when N > 1
    if template.args:
        container["args"] = list(template.args)
    if template.working_dir:
        container["workingDir"] = template.working_dir
    resources = _resources(template.resources)
    if resources:
        container["resources"] = resources
    contract = trial_env(exp.name, spec, trial, channel)
    reserved = {e["name"] for e in contract}
    short = {e.name for e in template.env}
    own = [e for e in container.get("env") or [] if e["name"] not in reserved and e["name"] not in short]
    container["env"] = contract + own
    container["terminationMessagePath"] = names.TERMINATION_MESSAGE_PATH
    container["terminationMessagePolicy"] = "File"
    container.setdefault("securityContext", restricted_container_security())
    mounts = container.get("volumeMounts") or []
    container["volumeMounts"] = [*mounts, {"name": OUTPUT_VOLUME, "mountPath": OUTPUT_MOUNT}]
    pod_spec["restartPolicy"] = "Never"
    pod_spec.setdefault("automountServiceAccountToken", False)
    pod_spec.setdefault("enableServiceLinks", False)
    security = restricted_pod_security()
    if spec.artifacts is not None:
        security["fsGroup"] = security["runAsGroup"]  # the claim's files belong to the trainer's group
    pod_spec.setdefault("securityContext", security)
    pod_spec["volumes"] = [*(pod_spec.get("volumes") or []), _output_volume(spec)]
    if gpus > 1:
        _add_shared_memory(pod_spec, container)
    if template.node_selector:
        pod_spec["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        pod_spec["tolerations"] = _tolerations(template)
    if template.priority_class_name:
        pod_spec["priorityClassName"] = template.priority_class_name
    labels = names.trainer_labels(exp.name, trial["metadata"]["name"])
    metadata: dict[str, Any] = {"labels": {**(user.metadata.labels if user else {}), **labels}}
    if user is not None and user.metadata.annotations:
        metadata["annotations"] = dict(user.metadata.annotations)
    return {"metadata": metadata, "spec": pod_spec}


def trainer_job(
    exp: ExperimentRef, spec: SearchExperimentSpec, trial: Mapping[str, Any], channel: ProgressChannel | None = None
) -> dict[str, Any]:
    """The Job that trains one Trial, named after it and labelled with it.

    Its owner is the experiment, not the Trial: it needs no Trial uid, so the operator creates the
    Trial and its Job side by side (one API round trip less between two trials).
    """
    template = spec.trial_template
    name = trial["metadata"]["name"]
    labels = names.trainer_labels(exp.name, name)
    owner = exp.owner
    job_spec: dict[str, Any] = {
        "backoffLimit": template.retries,
        "completions": 1,
        "parallelism": 1,
        "podFailurePolicy": pod_failure_policy(),
        "template": trainer_pod(exp, spec, trial, channel),
    }
    if template.deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = template.deadline_seconds
    queue = spec.queue()
    if queue:  # Kueue admits the Job (unsuspends it) when its ClusterQueue has the quota
        labels = {**labels, KUEUE_QUEUE_LABEL: queue}
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(name, exp.namespace, labels, owner),
        "spec": job_spec,
    }

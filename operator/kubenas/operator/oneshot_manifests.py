"""Pure builders of a one-shot search's own objects: the supernet Job, the evaluator, the evaluation record.

- Phase 1, the supernet Job ``<exp>-supernet``: the trial template's Job (image, resources, pod
  template, retries, Kueue) running ``oneShot.command`` + ``train`` with the supernet's settings and
  seed, writing its checkpoint into the artifact store (``<path>/<exp>/<exp>-supernet``). Its pods
  carry the trainer labels with trial ``<exp>-supernet``, so the operator's pod and Job watches see it
  like any trial's.
  With ``oneShot.sampling: enas`` its trainer also gets the path channel
  (:func:`kubenas.controller.paths.trainer_env`): the controller's addresses, the supernet's path
  credential and the policy's config, so it draws its paths from the controller's policy.
- Phase 2, the evaluator ``<exp>-evaluator``: a Deployment of the trial image with the artifact store
  mounted, running ``kubenas controller evaluator`` around ``oneShot.command`` + ``evaluate``, and a
  headless Service whose EndpointSlice gives the operator its pod IP (as for the controller).
- The evaluation record: ConfigMaps ``<exp>-evaluations-<k>``, one key per evaluation (its index),
  :data:`CHUNK` evaluations each, well below a ConfigMap's 1 MiB.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.controller import paths
from kubenas.core.codec import record_from_wire, trial_wire
from kubenas.core.enas import policy_config
from kubenas.core.errors import SpecError
from kubenas.core.oneshot import settings_of, supernet_seed, supernet_settings
from kubenas.core.records import TrialRecord
from kubenas.operator import names
from kubenas.operator.manifests import (
    ExperimentRef,
    ProgressChannel,
    _meta,
    headless_service,
    output_dir,
    recreate_deployment,
    restricted_container_security,
    trainer_image,
    trainer_job,
    trainer_pod,
)

#: evaluations per ConfigMap of the record (a told evaluation is about 0.5 KiB)
CHUNK = 500
#: the evaluator's port (the controller's port name, so the EndpointSlice view reads it)
EVALUATOR_PORT = names.CONTROLLER_PORT


def supernet_spec(spec: SearchExperimentSpec) -> SearchExperimentSpec:
    """The spec the supernet Job is built from: the trial template running ``oneShot.command train``
    with the supernet's settings, no arguments, no starting weights and no per-trial deadline (the
    supernet trains for longer than a trial; ``timeBudgetS`` in ``supernetSettings`` bounds it)."""
    assert spec.one_shot is not None
    template = spec.trial_template.model_copy(
        update={
            "command": [*spec.one_shot.command, "train"],
            "args": [],
            "settings": supernet_settings(spec),
            "deadline_seconds": None,
            "inherit_weights": False,
            "init_from": None,
        }
    )
    return spec.model_copy(update={"trial_template": template, "early_stopping": None})


def supernet_dir(spec: SearchExperimentSpec, experiment: str) -> str:
    """Where the supernet's checkpoint is, in any pod that mounts the artifact store."""
    return output_dir(spec, experiment, names.supernet_name(experiment))


def needs_controller(spec: SearchExperimentSpec) -> bool:
    """Whether the supernet trainer talks to the controller (ENAS: its paths are the controller's policy's)."""
    return policy_config(spec, supernet_seed(spec)) is not None


def supernet_paths_env(
    exp: ExperimentRef, spec: SearchExperimentSpec, channel: ProgressChannel | None
) -> dict[str, str]:
    """The path channel's variables for the supernet trainer: none for uniform sampling; for ENAS the
    controller's addresses (those the progress channel gives trainers), the path credential of the
    supernet's trial name and the policy's config, seeded with the supernet's seed."""
    config = policy_config(spec, supernet_seed(spec))
    if config is None:
        return {}
    if channel is None:
        raise SpecError("spec.oneShot.sampling", "ENAS sampling needs the controller's address for the supernet Job")
    return paths.trainer_env(channel.urls, channel.secret, names.supernet_name(exp.name), config)


def supernet_job(
    exp: ExperimentRef, spec: SearchExperimentSpec, channel: ProgressChannel | None = None
) -> dict[str, Any]:
    """Phase 1: the Job that trains the supernet (the trial contract without an architecture); with
    ENAS sampling (``channel``: the controller reached) the path channel besides."""
    body = {
        "metadata": {"name": names.supernet_name(exp.name)},
        "spec": {"architecture": {}, "architectureId": "", "seed": supernet_seed(spec), "parents": []},
    }
    job = trainer_job(exp, supernet_spec(spec), body)
    extra = supernet_paths_env(exp, spec, channel)
    if extra:
        pod_spec = job["spec"]["template"]["spec"]
        container = next(c for c in pod_spec["containers"] if c["name"] == names.TRAINER_CONTAINER)
        own = [e for e in container["env"] if e["name"] not in extra]
        container["env"] = [*own, *({"name": k, "value": v} for k, v in extra.items())]
    return job


def evaluator_command(spec: SearchExperimentSpec, experiment: str) -> list[str]:
    """``kubenas controller evaluator`` serving the evaluate command of ``oneShot.command`` over HTTP."""
    assert spec.one_shot is not None
    evaluate = spec.one_shot.evaluate_command(supernet_dir(spec, experiment))
    front = ["kubenas", "controller", "evaluator", "--port", str(EVALUATOR_PORT)]
    return [*front, "--message-file", names.TERMINATION_MESSAGE_PATH, "--", *evaluate]


def evaluator_service(exp: ExperimentRef) -> dict[str, Any]:
    """A headless Service for the evaluator's EndpointSlice (its pod IP), like the controller's."""
    return headless_service(exp, names.evaluator_name(exp.name), names.evaluator_selector(exp.name))


def evaluator_deployment(exp: ExperimentRef, spec: SearchExperimentSpec) -> dict[str, Any]:
    """Phase 2: ``oneShot.evaluators`` evaluator pods from the trial template's pod (image, resources,
    GPUs, node placement, the artifact store mounted), restarted by their Deployment if they die;
    Recreate, so a changed template never runs beside the old one."""
    name = names.evaluator_name(exp.name)
    selector = names.evaluator_selector(exp.name)
    labels = {**names.experiment_labels(exp.name), **selector}
    body = {"metadata": {"name": name}, "spec": {"architecture": {}, "architectureId": "", "seed": 0}}
    pod = trainer_pod(exp, spec, body)
    pod_spec = pod["spec"]
    container = next(c for c in pod_spec["containers"] if c["name"] == names.TRAINER_CONTAINER)
    container["name"] = names.COMPONENT_EVALUATOR
    container["image"] = trainer_image(spec)
    container["command"] = evaluator_command(spec, exp.name)
    container.pop("args", None)
    token = {"secretKeyRef": {"name": names.controller_name(exp.name), "key": names.TOKEN_KEY}}
    env = [e for e in container["env"] if not e["name"].startswith("KUBENAS_")]  # no trial contract: no trial
    container["env"] = [*env, {"name": names.TOKEN_ENV, "valueFrom": token}]
    # a failed start: the front writes why (--message-file); if it dies otherwise, its log's tail says
    container["terminationMessagePath"] = names.TERMINATION_MESSAGE_PATH
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    container["ports"] = [{"name": names.CONTROLLER_PORT_NAME, "containerPort": EVALUATOR_PORT, "protocol": "TCP"}]
    container["readinessProbe"] = {
        "httpGet": {"path": "/health", "port": names.CONTROLLER_PORT_NAME},
        "periodSeconds": 1,
    }
    container.setdefault("securityContext", restricted_container_security())
    pod_spec["restartPolicy"] = "Always"
    metadata = {**pod["metadata"], "labels": {**pod["metadata"]["labels"], **labels}}
    metadata["labels"].pop(names.LABEL_TRIAL, None)
    replicas = settings_of(spec).evaluators
    return recreate_deployment(exp, name, selector, {"metadata": metadata, "spec": pod_spec}, replicas)


# -- the evaluation record -----------------------------------------------------------------------
def _key(index: int) -> str:
    return f"{index:05d}"


def record_patches(experiment: str, records: Iterable[TrialRecord]) -> dict[int, dict[str, str]]:
    """Chunk number → the ConfigMap keys to add for ``records`` (each a told evaluation, as a Trial's wire form)."""
    out: dict[int, dict[str, str]] = {}
    for rec in records:
        out.setdefault(rec.index // CHUNK, {})[_key(rec.index)] = json.dumps(
            trial_wire(rec, experiment), sort_keys=True, separators=(",", ":")
        )
    return out


def record_config_map(exp: ExperimentRef, chunk: int, data: Mapping[str, str]) -> dict[str, Any]:
    """The ``chunk``-th ConfigMap of the evaluation record."""
    labels = {**names.experiment_labels(exp.name), names.LABEL_COMPONENT: names.COMPONENT_EVALUATIONS}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(names.evaluations_name(exp.name, chunk), exp.namespace, labels, exp.owner),
        "data": dict(data),
    }


def record_selector(experiment: str) -> dict[str, str]:
    return {names.LABEL_EXPERIMENT: experiment, names.LABEL_COMPONENT: names.COMPONENT_EVALUATIONS}


def read_record(config_maps: Iterable[Mapping[str, Any]]) -> list[TrialRecord]:
    """The evaluations the ConfigMaps hold, by index, up to the first gap: the record is written in
    order, so what follows a gap (a later chunk written before an earlier one failed) is not history."""
    found: dict[int, TrialRecord] = {}
    for cm in config_maps:
        for key, text in (cm.get("data") or {}).items():
            if key.isdigit():
                found[int(key)] = record_from_wire(json.loads(text))
    out: list[TrialRecord] = []
    while len(out) in found:
        out.append(found[len(out)])
    return out


__all__ = [
    "CHUNK",
    "EVALUATOR_PORT",
    "evaluator_command",
    "evaluator_deployment",
    "evaluator_service",
    "needs_controller",
    "read_record",
    "record_config_map",
    "record_patches",
    "record_selector",
    "supernet_dir",
    "supernet_job",
    "supernet_paths_env",
    "supernet_spec",
]

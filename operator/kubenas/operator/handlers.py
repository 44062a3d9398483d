"""Every kopf registration of the operator, in one place. Handlers parse, route and wake; no logic.

- **Indexes** (Trials, trainer Jobs and Pods, controller EndpointSlices) are the operator's cache;
  kopf fills them completely before the first handler runs, so a restarted operator reconciles from
  the whole picture.
- **Experiment handlers**: every replica remembers the newest copy of each experiment (the runtime
  keeps them); the replica that leads also runs its reconciler: create and resume start it, update
  (of the spec) wakes it, the deletion event stops it and drops its metric series. Deletion needs
  no finalizer: every child has an owner reference and the garbage collector removes it.
- **Watch events** on Jobs, Pods and EndpointSlices wake the experiment's reconciler at once, which
  is how a finished trial starts the next one without any polling.

Run with ``kubenas operator``, or ``kopf run -m kubenas.operator.handlers --standalone -A``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kubenas.api.v1alpha1 import GROUP, VERSION
from kubenas.operator import names
from kubenas.operator.kube import bearer, client_configuration
from kubenas.operator.reconciler import ExperimentReconciler
from kubenas.operator.runtime import OperatorConfig, Reconciler, Runtime
from kubenas.operator.views import EndpointView, JobView, PodView, TrialView

log = logging.getLogger("kubenas.operator")

EXPERIMENTS = (GROUP, VERSION, names.PLURAL_EXPERIMENTS)
TRIALS = (GROUP, VERSION, names.PLURAL_TRIALS)
JOBS = ("batch", "v1", "jobs")
PODS = ("v1", "pods")
SLICES = ("discovery.k8s.io", "v1", "endpointslices")
#: the watches' server-side filters: only our trainer pods and Jobs, controller slices and Trials reach
#: the operator, so the handlers need no label filters of their own (kopf matched each handler's
#: filter against every event again)
TRAINERS = f"{names.LABEL_COMPONENT}={names.COMPONENT_TRAINER},{names.LABEL_EXPERIMENT}"
#: trainer exit codes that carry a result (success, bad candidate): the turnaround clock starts there
ENDS_WITH_RESULT = frozenset({0, *names.FINAL_EXIT_CODES})
#: EndpointSlices of the controllers' Services and of one-shot searches' evaluators
CONTROLLERS = (
    f"{names.LABEL_COMPONENT} in ({names.COMPONENT_CONTROLLER},{names.COMPONENT_EVALUATOR}),{names.LABEL_EXPERIMENT}"
)


# -- lifecycle ---------------------------------------------------------------------------------
class ExperimentDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled-configuration, built only for SearchExperiments.

    kopf builds this "essence" (a deep copy of the object) on every watch event of every watched
    kind to detect changes, though only experiments have change handlers here; for trainer pods and
    Jobs, which change many times per trial, that copy was a quarter of the operator's CPU.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        if body.get("kind") != "SearchExperiment":
            return None
        return super().build(body=body, extra_fields=extra_fields)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """kopf's bookkeeping in our group's annotations; no kopf events (ours are explicit); our runtime,
    which joins the leader election when one is configured."""
    settings.persistence.finalizer = names.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = ExperimentDiffBase(
        prefix=names.ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.posting.enabled = False
    # Server-side filters: the API server sends only our pods, Jobs and slices, not the cluster's.
    settings.watching.label_selectors[PODS] = TRAINERS
    settings.watching.label_selectors[JOBS] = TRAINERS
    settings.watching.label_selectors[SLICES] = CONTROLLERS
    settings.watching.label_selectors[TRIALS] = names.LABEL_EXPERIMENT
    config = OperatorConfig.from_env()
    runtime = Runtime.create(config, ExperimentReconciler)
    if config.metrics_port is not None:
        port = runtime.metrics.serve(config.metrics_port, config.metrics_address)
        log.info("metrics served", extra={"address": config.metrics_address, "port": port})
    memo.runtime = runtime
    runtime.start()


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's credentials from the same kubeconfig (or service account) as the operator's own client."""
    cfg = client_configuration(OperatorConfig.from_env().kubeconfig)
    header = bearer(cfg)
    scheme, _, token = header.partition(" ") if header and " " in header else (None, "", header)
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    await memo.runtime.close()


# -- the cache ---------------------------------------------------------------------------------
# The indexers are coroutines although they never await: kopf runs plain functions in a thread
# pool, which would cost a thread hop on every watch event of every trainer pod and Job.
@kopf.index(*TRIALS)
async def trial_index(namespace: str, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict:
    return {(namespace, labels[names.LABEL_EXPERIMENT]): TrialView.parse(body)}


@kopf.index(*JOBS)
async def job_index(namespace: str, body: kopf.Body, **_: Any) -> dict:
    view = JobView.parse(body)
    return {(namespace, view.trial): view}


@kopf.index(*PODS)
async def pod_index(namespace: str, body: kopf.Body, **_: Any) -> dict:
    view = PodView.parse(body)
    return {(namespace, view.trial): view}


@kopf.index(*SLICES)
async def endpoint_index(namespace: str, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict:
    return {(namespace, labels[names.LABEL_EXPERIMENT]): EndpointView.parse(body)}


# -- experiments -------------------------------------------------------------------------------
@kopf.on.resume(*EXPERIMENTS)
@kopf.on.create(*EXPERIMENTS)
@kopf.on.update(*EXPERIMENTS, field="spec")
async def experiment_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A new experiment, one found at operator start, or a spec edit: the leader's reconciler
    rebuilds its state from the objects, accepts a budget change or refuses the edit with a reason."""
    reconciler = memo.runtime.observe(body, kwargs)
    if reconciler is not None:
        reconciler.wake()


@kopf.on.event(*EXPERIMENTS)
async def experiment_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Keep the newest copy of each experiment; stop its reconciler when it is deleted."""
    if type == "DELETED" or body.metadata.get("deletionTimestamp"):
        await memo.runtime.forget(body)
    else:
        memo.runtime.observe(body, kwargs)


# -- wake-ups ----------------------------------------------------------------------------------
def _wake(memo: kopf.Memo, namespace: str, labels: Mapping[str, str]) -> Reconciler | None:
    reconciler = memo.runtime.reconcilers.get((namespace, labels.get(names.LABEL_EXPERIMENT, "")))
    if reconciler is not None:
        reconciler.wake()
    return reconciler


@kopf.on.event(*PODS)
async def trainer_pod_event(
    type: str | None, namespace: str, labels: Mapping[str, str], body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """A trainer pod appeared, started or ended: record the time (turnaround) and wake the experiment.
    Its appearance counts: a pod that waits to start (a missing claim) is timed from it."""
    view = PodView.parse(body)
    state = "terminated" if view.terminated is not None else "running" if view.running_since else "waiting"
    if not memo.runtime.transitions.changed(view.uid, state, gone=type == "DELETED"):
        return
    reconciler = _wake(memo, namespace, labels)
    if reconciler is not None and view.terminated is not None and view.terminated.exit_code in ENDS_WITH_RESULT:
        reconciler.note_termination(view.uid)


@kopf.on.event(*JOBS)
async def trainer_job_event(
    type: str | None, namespace: str, labels: Mapping[str, str], body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """A trainer Job gave its verdict (retries exhausted, deadline, complete), or Kueue admitted or
    preempted it (unsuspended it, suspended it again): the waiting count changes."""
    view = JobView.parse(body)
    state = "complete" if view.complete else "failed" if view.failed else "suspended" if view.suspended else None
    if memo.runtime.transitions.changed(view.uid, state, gone=type == "DELETED"):
        _wake(memo, namespace, labels)


@kopf.on.event(*SLICES)
async def controller_endpoint_event(namespace: str, labels: Mapping[str, str], memo: kopf.Memo, **_: Any) -> None:
    """The controller pod (or a one-shot search's evaluator) became ready, moved or went away."""
    _wake(memo, namespace, labels)

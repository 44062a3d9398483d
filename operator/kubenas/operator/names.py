"""Names, labels and keys shared by everything the operator creates.

Child names are deterministic functions of the experiment's name, so a restarted operator finds what
an earlier one created, and creating an object twice is an ``AlreadyExists``, never a duplicate.
"""

from __future__ import annotations

from kubenas.api import kube
from kubenas.api.v1alpha1 import GROUP
from kubenas.core.outcome import BAD_CANDIDATE_EXIT_CODE, CONFIG_ERROR_EXIT_CODE
from kubenas.core.records import trial_name as trial_name  # one naming rule for every adapter

PLURAL_EXPERIMENTS = "searchexperiments"
PLURAL_TRIALS = "trials"

LABEL_EXPERIMENT = f"{GROUP}/experiment"
LABEL_TRIAL = f"{GROUP}/trial"
LABEL_COMPONENT = f"{GROUP}/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
#: the label that puts a Job in a Kueue LocalQueue
KUEUE_QUEUE_LABEL = kube.KUEUE_QUEUE_LABEL
MANAGED_BY = "kubenas"
COMPONENT_CONTROLLER = "controller"
COMPONENT_TRAINER = "trainer"
#: a one-shot search's evaluator pod (phase 2) and the ConfigMaps of its light record
COMPONENT_EVALUATOR = "evaluator"
COMPONENT_EVALUATIONS = "evaluations"

#: Only used if a handler ever needs to block deletion; the operator registers none that do.
FINALIZER = f"{GROUP}/finalizer"
#: Prefix of kopf's bookkeeping annotations, so they live in our group too.
ANNOTATION_PREFIX = GROUP

#: exits that end a trial at once, never retried by the Job (the trial contract's; judged by the core)
FINAL_EXIT_CODES = frozenset({BAD_CANDIDATE_EXIT_CODE, CONFIG_ERROR_EXIT_CODE})

TRAINER_CONTAINER = "trainer"
CONTROLLER_CONTAINER = "controller"
CONTROLLER_PORT = 8080
CONTROLLER_PORT_NAME = "http"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"

#: Keys of the per-experiment Secret: the controller's bearer token and the accepted spec.
TOKEN_KEY = "token"
SPEC_KEY = "spec.json"
TOKEN_ENV = "KUBENAS_CONTROLLER_TOKEN"
#: The push channel in a trainer's environment: the controller's addresses and the trial's own credential.
PROGRESS_URL_ENV = "KUBENAS_PROGRESS_URL"
PROGRESS_TOKEN_ENV = "KUBENAS_PROGRESS_TOKEN"

#: Longest experiment name whose children's names (``<exp>-controller``, ``<exp>-00042``) fit 63 characters.
MAX_EXPERIMENT_NAME = 63 - len("-controller")


def controller_name(experiment: str) -> str:
    """Name of the controller's Deployment, Service and Secret."""
    return f"{experiment}-controller"


def supernet_name(experiment: str) -> str:
    """Name of a one-shot search's supernet Job (phase 1), also the trial label of its pods."""
    return f"{experiment}-supernet"


def evaluator_name(experiment: str) -> str:
    """Name of a one-shot search's evaluator Deployment and Service (phase 2)."""
    return f"{experiment}-evaluator"


def evaluations_name(experiment: str, chunk: int) -> str:
    """Name of the ``chunk``-th ConfigMap of a one-shot search's evaluation record."""
    return f"{experiment}-evaluations-{chunk}"


def evaluator_selector(experiment: str) -> dict[str, str]:
    """Labels that select the evaluator pod (and only it)."""
    return {LABEL_EXPERIMENT: experiment, LABEL_COMPONENT: COMPONENT_EVALUATOR}


def experiment_labels(experiment: str) -> dict[str, str]:
    return {LABEL_EXPERIMENT: experiment, LABEL_MANAGED_BY: MANAGED_BY}


def controller_selector(experiment: str) -> dict[str, str]:
    """Labels that select the controller pod (and only it)."""
    return {LABEL_EXPERIMENT: experiment, LABEL_COMPONENT: COMPONENT_CONTROLLER}


def trainer_labels(experiment: str, trial: str) -> dict[str, str]:
    return {**experiment_labels(experiment), LABEL_TRIAL: trial, LABEL_COMPONENT: COMPONENT_TRAINER}


def name_problem(experiment: str) -> str | None:
    """Why an experiment name cannot be used for its children, or None if it can."""
    if len(experiment) > MAX_EXPERIMENT_NAME:
        return (
            f"metadata.name: {len(experiment)} characters; at most {MAX_EXPERIMENT_NAME} fit the names of the"
            f" controller Service ({controller_name('…')}) and the trial Jobs"
        )
    if not experiment[:1].isalpha():
        return "metadata.name: must start with a letter (it names the controller Service, a DNS-1035 label)"
    return None

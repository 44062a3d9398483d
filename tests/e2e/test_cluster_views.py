"""``kubenas status``, ``watch`` and ``logs`` against a real API server.

The objects are created directly with the admin client, as the operator would have left them: a
SearchExperiment with its status, Trials with theirs, and a finished trainer pod. No operator runs;
the views only read.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from kubenas.api.space import SearchSpaceSpec
from kubenas.api.v1alpha1 import GROUP, VERSION
from kubenas.cli import app
from kubenas.core.space import SearchSpace, build_space
from kubenas.operator import names
from kubenas_dev.operator_fixtures import crds
from kubenas_dev.operator_testing import experiment_manifest

__all__ = ["crds"]

OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"]
EXPERIMENT = "views"


def space() -> SearchSpace:
    return build_space(SearchSpaceSpec.model_validate({"cell": {"nodes": 4, "operations": OPS}}))


def score(arch: dict[str, Any]) -> float:
    """A known landscape: edge_3_0 decides the accuracy, the other edges barely matter."""
    return 0.5 + 0.1 * OPS.index(arch["edge_3_0"]) + 0.001 * OPS.index(arch["edge_1_0"])


def make_experiment(k8s: Any, namespace: str, trials: int, phase: str) -> list[dict[str, Any]]:
    manifest = experiment_manifest(
        EXPERIMENT, max_trials=20, parallel=2, search_space={"cell": {"nodes": 4, "operations": OPS}}
    )
    k8s.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, names.PLURAL_EXPERIMENTS, manifest)
    sp = space()
    archs = [sp.unrank((i * 37) % sp.size) for i in range(trials)]  # type: ignore[operator]
    best = max(range(trials), key=lambda i: score(archs[i]))
    for i, arch in enumerate(archs):
        name = names.trial_name(EXPERIMENT, i)
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Trial",
            "metadata": {"name": name, "labels": names.experiment_labels(EXPERIMENT)},
            "spec": {"experiment": EXPERIMENT, "index": i, "architecture": arch, "architectureId": sp.canonical(arch)},
        }
        k8s.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, names.PLURAL_TRIALS, body)
        status = {"phase": "Succeeded", "reward": score(arch), "metrics": {"val_accuracy": score(arch)}}
        status |= {"attempts": 1, "tellSequence": i, "asksBeforeTell": i + 1}
        k8s.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, names.PLURAL_TRIALS, name, {"status": status}
        )
    done = phase == "Succeeded"
    exp_status = {
        "phase": phase,
        "progress": f"{trials}/20",
        "startTime": "2025-01-01T00:00:00Z",
        "conditions": [
            {
                "type": "Running",
                "status": "False" if done else "True",
                "reason": "MaxTrialsReached" if done else "Running",
                "message": "",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
            }
        ],
        "bestTrial": {
            "name": names.trial_name(EXPERIMENT, best),
            "architecture": archs[best],
            "reward": score(archs[best]),
            "metrics": {"val_accuracy": score(archs[best])},
        },
        "bestReward": score(archs[best]),
    }
    if done:
        exp_status["completionTime"] = "2025-01-01T00:10:00Z"
    k8s.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, names.PLURAL_EXPERIMENTS, EXPERIMENT, {"status": exp_status}
    )
    return archs


def cli(cluster: Any, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--kubeconfig", str(cluster.kubeconfig)], env={"COLUMNS": "200"})


def test_status_shows_progress_leaderboard_genotype_and_importance(
    cluster: Any, namespace: str, crds: None, k8s: Any
) -> None:
    archs = make_experiment(k8s, namespace, trials=14, phase="Running")
    out = cli(cluster, "status", EXPERIMENT, "-n", namespace)
    assert out.exit_code == 0, out.output
    text = out.output
    assert "Running" in text and "14/20 trials" in text and "succeeded 14" in text
    best = max(archs, key=score)
    assert f"best architecture ({EXPERIMENT}-" in text
    assert "|nor_conv_3x3~0|" in text.split("best architecture")[1].splitlines()[0]  # edge_3_0 of the best
    assert best["edge_3_0"] == "nor_conv_3x3"
    importance_rows = [line for line in text.splitlines() if "edge_3_0" in line and "nor_conv_3x3 +" in line]
    assert importance_rows, text  # the decision that drives the reward, and its best choice's shift
    assert "Motifs of the top 5 of 14" in text


def test_status_of_a_missing_experiment_is_one_line(cluster: Any, namespace: str, crds: None) -> None:
    out = cli(cluster, "status", "nothing-here", "-n", namespace)
    assert out.exit_code == 1
    assert out.output.strip() == f"error: SearchExperiment {namespace}/nothing-here not found"


def test_watch_returns_once_the_experiment_has_ended(cluster: Any, namespace: str, crds: None, k8s: Any) -> None:
    make_experiment(k8s, namespace, trials=4, phase="Succeeded")
    out = cli(cluster, "watch", EXPERIMENT, "-n", namespace, "--interval", "0.5")
    assert out.exit_code == 0, out.output
    assert "Succeeded (MaxTrialsReached)" in out.output
    assert "importance: after 10 succeeded trials (4 so far)" in out.output
    wide = cluster.kubectl("get", "searchexperiments", EXPERIMENT, "-n", namespace, "-o", "wide")
    header, row = wide.stdout.splitlines()[:2]
    # the column reads a real condition (read at its offset: a column left blank, such as ONESHOT, has no word)
    assert row[header.index("REASON") :].split()[0] == "MaxTrialsReached"


def test_logs_show_the_outcome_and_termination_message_when_the_node_has_no_log(
    cluster: Any, namespace: str, crds: None, k8s: Any
) -> None:
    make_experiment(k8s, namespace, trials=2, phase="Running")
    trial = names.trial_name(EXPERIMENT, 1)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{trial}-abcde", "labels": names.trainer_labels(EXPERIMENT, trial)},
        "spec": {
            "nodeName": "a-node-that-is-gone",  # no agent runs it: the pod is only a record
            "restartPolicy": "Never",
            "containers": [{"name": names.TRAINER_CONTAINER, "image": "kubenas/trainer:test"}],
        },
    }
    k8s.core.create_namespaced_pod(namespace, pod)
    message = json.dumps({"val_accuracy": 0.61, "status": "completed"})
    terminated = {"exitCode": 0, "reason": "Completed", "message": message}
    k8s.core.patch_namespaced_pod_status(
        pod["metadata"]["name"],
        namespace,
        {
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": names.TRAINER_CONTAINER,
                        "image": "kubenas/trainer:test",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            }
        },
    )
    out = cli(cluster, "logs", trial, "-n", namespace)
    assert out.exit_code == 0, out.output
    assert f"{trial}  Succeeded" in out.output
    assert "final metrics: val_accuracy=" in out.output
    assert "no log from the node" in out.output
    assert '"val_accuracy": 0.61' in out.output  # the termination message the cluster kept


@pytest.mark.parametrize("missing", ["nothing-00000"])
def test_logs_of_a_missing_trial_is_one_line(cluster: Any, namespace: str, crds: None, missing: str) -> None:
    out = cli(cluster, "logs", missing, "-n", namespace)
    assert out.exit_code == 1
    assert out.output.strip() == f"error: Trial {namespace}/{missing} not found"

"""A one-shot search on the development cluster: the three phases, and an operator killed in each.

The shipped example (examples/digits-oneshot.yaml, its sizes cut) runs with the real trainer on
digits: the supernet Job writes its checkpoint to a claim bound to a local PersistentVolume, the
evaluator pod loads it once and scores the candidates the controller's evolution proposes, the
record of those scores lives in ConfigMaps (no Trial each), and the top k are retrained as Trials.

What a run must end with is checked against the record itself, so no second run is needed: the
record replays through the strategy (every re-asked architecture is checked), each recorded score is
what a fresh evaluator gives that candidate on the checkpoint, and the Trials are the record's top k.
An unbroken run ends with exactly such a record, so a run killed anywhere must too.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.controller import paths
from kubenas.core.codec import record_from_wire
from kubenas.core.enas import PathPolicy, path_from_wire, policy_config
from kubenas.core.oneshot import evaluation_spec, supernet_seed
from kubenas.core.records import TrialRecord
from kubenas.core.retrain import top_architectures
from kubenas.core.search import Search
from kubenas.operator import names
from kubenas_dev.cluster.faults import FaultClient
from kubenas_dev.cluster.launcher import Cluster
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import Kube, OperatorProcess, condition, wait_for
from kubenas_trainer.enas import RECORD_FILE
from kubenas_trainer.oneshot import CHECKPOINT_FILE, Evaluator
from tests.e2e.test_operator_artifacts import bound_claim

__all__ = ["crds", "kube", "kubenas_operator"]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits-oneshot.yaml"
SMALL = {"epochs": 1, "width": 8, "stages": 2, "cellsPerStage": 1, "timeBudgetS": 120}


def shipped(name: str, evaluations: int) -> dict[str, Any]:
    """The example as shipped, its sizes cut, on its own artifact store claim."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["name"] = name
    spec = doc["spec"]
    spec["oneShot"].update({"evaluations": evaluations, "topK": 2, "recalibrationBatches": 2})
    spec["oneShot"]["supernetSettings"] = {"epochs": 2, "timeBudgetS": 120}
    spec["budget"] = {"maxTrials": 2, "parallelTrials": 2}
    spec["trialTemplate"]["settings"].update(SMALL)
    spec["trialTemplate"]["command"] = ["kubenas-trainer"]
    assert spec["artifacts"] == {"persistentVolumeClaim": "kubenas-artifacts"}
    return doc


@pytest.fixture
def store(kube: Kube, tmp_path: Path) -> Iterator[Path]:
    """The artifact store: a folder behind the claim ``kubenas-artifacts``, its PersistentVolume
    deleted after the test."""
    folder = tmp_path / "pv"
    pv = bound_claim(kube, folder, "kubenas-artifacts")
    try:
        yield folder
    finally:
        kube.core.delete_persistent_volume(pv)


def one_shot(kube: Kube, name: str) -> dict[str, Any]:
    return ((kube.experiment(name) or {}).get("status") or {}).get("oneShot") or {}


def record(kube: Kube, name: str) -> list[TrialRecord]:
    """The evaluation record as the ConfigMaps hold it, by index."""
    selector = f"{names.LABEL_EXPERIMENT}={name},{names.LABEL_COMPONENT}={names.COMPONENT_EVALUATIONS}"
    found: dict[int, TrialRecord] = {}
    for cm in kube.core.list_namespaced_config_map(kube.namespace, label_selector=selector).items:
        for key, text in (cm.data or {}).items():
            found[int(key)] = record_from_wire(json.loads(text))
    return [found[i] for i in sorted(found)]


def check_outcome(kube: Kube, name: str, store: Path, evaluations: int) -> dict[str, Any]:
    """The finished search: its status, record, Trials and objects are what an unbroken run leaves."""
    exp = kube.experiment(name)
    assert exp is not None
    status = exp["status"]
    assert status["phase"] == "Succeeded", status
    assert condition(exp, "Succeeded")["reason"] == "MaxTrialsReached"
    spec = SearchExperimentSpec.model_validate(exp["spec"])
    shot = status["oneShot"]
    assert shot["phase"] == "Retrain"
    assert shot["supernet"]["succeeded"] and shot["supernet"]["attempts"] == 1, shot["supernet"]
    assert shot["evaluations"]["told"] == evaluations == shot["evaluations"]["target"]

    # the record: a replayable history of exactly `evaluations` candidates, no Trial each
    evaluated = record(kube, name)
    assert [e.index for e in evaluated] == list(range(evaluations))
    assert all(e.told and e.name == f"{name}-eval-{e.index:05d}" for e in evaluated)
    Search(evaluation_spec(spec), evaluated)  # raises ReplayError if any architecture differs from a replay's

    # each score is what the supernet gives the candidate (a cell with no path from input to output is a
    # bad candidate, recorded as such): the record is the one an unbroken run writes
    checkpoint = store / "runs" / name / names.supernet_name(name)
    assert (checkpoint / CHECKPOINT_FILE).is_file()
    assert spec.one_shot is not None
    evaluator = Evaluator(checkpoint, spec.one_shot.recalibration_batches, finetune_steps=spec.one_shot.finetune_steps)
    scored = [e for e in evaluated if e.phase == "Succeeded"]
    assert len(scored) >= evaluations // 2, [e.reason for e in evaluated]
    for e in scored:
        score = evaluator.evaluate(e.architecture)["val_accuracy"]
        assert score == pytest.approx(e.metrics["val_accuracy"], abs=1e-6), e.name  # results carry 6 decimals

    # phase 3: the top 2 of the record, best first, retrained as the experiment's only Trials
    top = top_architectures(evaluated, spec.objective, 2)
    assert [c["architecture"] for c in shot["top"]] == [c.architecture for c in top]
    assert shot["bestScore"] == top[0].value
    trials = kube.trials(name)
    assert [t["metadata"]["name"] for t in trials] == [f"{name}-00000", f"{name}-00001"]
    assert [t["spec"]["architecture"] for t in trials] == [c.architecture for c in top]
    assert all(t["status"]["phase"] == "Succeeded" for t in trials)

    # one supernet pod (never trained twice), the evaluator stopped, a PhaseStarted event per phase
    supernet = kube.pods(f"{names.LABEL_TRIAL}={names.supernet_name(name)}")
    assert len(supernet) == 1
    evaluator_deployment = kube.apps.read_namespaced_deployment(names.evaluator_name(name), kube.namespace)
    assert evaluator_deployment.spec.replicas == 0
    started = [e.message.split(":")[0] for e in kube.events(name) if e.reason == "PhaseStarted"]
    assert sorted(set(started)) == ["phase Retrain", "phase Search", "phase Supernet"], started
    return status


def evaluator_pods(kube: Kube, name: str) -> set[str]:
    return {p.metadata.name for p in kube.pods(",".join(f"{k}={v}" for k, v in names.evaluator_selector(name).items()))}


def test_the_three_phases_of_the_shipped_one_shot_example(
    kube: Kube, kubenas_operator: OperatorProcess, store: Path, cluster: Cluster
) -> None:
    """With two evaluator pods: both score candidates, and the record is still the one a replay of the
    strategy proposes (the answers reach the driver in the order proposed, whichever pod was quicker)."""
    evaluations = 40  # enough that both pods are ready before the search ends (each loads the supernet)
    manifest = shipped("oneshot", evaluations=evaluations)
    manifest["spec"]["artifacts"]["path"] = "runs"
    manifest["spec"]["oneShot"]["evaluators"] = 2
    kube.apply_experiment(manifest)
    pods = wait_for(
        "two evaluator pods",
        lambda: (found := evaluator_pods(kube, "oneshot")) and len(found) == 2 and found,
        timeout=300,
    )
    kube.wait_phase("oneshot", timeout=420)
    check_outcome(kube, "oneshot", store, evaluations)
    scored = {pod: cluster.logs(kube.namespace, pod).count("candidate scored") for pod in pods}
    assert sum(scored.values()) >= evaluations and all(scored.values()), scored
    assert kubenas_operator.metric("kubenas_oneshot_evaluations", experiment="oneshot") == evaluations
    # the supernet is not a Trial, nor is any evaluation: the leaderboard holds trained networks only
    assert {t["metadata"]["name"] for t in kube.trials("oneshot")} == {"oneshot-00000", "oneshot-00001"}


def test_an_operator_killed_in_each_phase_ends_with_the_same_record_and_trials(
    kube: Kube, kubenas_operator: OperatorProcess, store: Path
) -> None:
    evaluations = 60
    manifest = shipped("restarts", evaluations=evaluations)
    manifest["spec"]["artifacts"]["path"] = "runs"
    manifest["spec"]["oneShot"]["evaluators"] = 2  # the kill in phase 2 finds candidates in flight on two pods
    kube.apply_experiment(manifest)

    # phase 1: killed while the supernet trains; the new operator follows the same Job
    wait_for(
        "the supernet pod running",
        lambda: (
            one_shot(kube, "restarts").get("phase") == "Supernet"
            and any(
                p.status.phase == "Running" for p in kube.pods(f"{names.LABEL_TRIAL}={names.supernet_name('restarts')}")
            )
        ),
        timeout=120,
    )
    kubenas_operator.kill()
    kubenas_operator.start()

    # phase 2: killed once part of the record is written
    told = wait_for("evaluations recorded", lambda: len(record(kube, "restarts")) or None, timeout=240, every=0.1)
    kubenas_operator.kill()
    assert told < evaluations, "the search ended before the kill: nothing was tested in phase 2"
    kubenas_operator.start()

    # phase 3: killed once the retraining Trials exist (the pass that creates them writes the phase to
    # status after them, so a loaded API server can show the Trials a moment before the phase)
    wait_for(
        "the retraining Trials and phase",
        lambda: kube.trials("restarts") and one_shot(kube, "restarts").get("phase") == "Retrain",
        timeout=240,
    )
    kubenas_operator.kill()
    kubenas_operator.start()

    kube.wait_phase("restarts", timeout=300)
    check_outcome(kube, "restarts", store, evaluations)


ENAS_EXAMPLE = EXAMPLE.with_name("digits-enas.yaml")


def controller_requests(address: str) -> dict[str, float]:
    """The controller process's own request counts, ``endpoint code`` → count (its /metrics)."""
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"http://{address}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "kubenas_controller_requests_total":
                out[f"{sample.labels['endpoint']} {sample.labels['code']}"] = sample.value
    return out


def controller_address(kube: Kube, name: str) -> str | None:
    pods = kube.pods(f"{names.LABEL_COMPONENT}={names.COMPONENT_CONTROLLER},{names.LABEL_EXPERIMENT}={name}")
    running = [p for p in pods if p.status.phase == "Running" and p.status.pod_ip]
    return f"{running[0].status.pod_ip}:{names.CONTROLLER_PORT}" if running else None


def rewards_told(kube: Kube, name: str) -> int | None:
    """Successful /rewards requests the current controller process answered (None: not reachable)."""
    address = controller_address(kube, name)
    if address is None:
        return None
    try:
        return int(controller_requests(address).get(f"{paths.REWARDS_PATH} 200", 0))
    except OSError:
        return None


def test_enas_supernet_paths_come_from_the_controller_policy_rewarded_per_path_through_a_controller_crash(
    kube: Kube, kubenas_operator: OperatorProcess, faults: FaultClient, namespace: str, store: Path
) -> None:
    """The shipped ENAS example, its sizes cut: the supernet Job draws its paths from the controller's
    policy and rewards each; the controller process is killed once rewards have come in, and the
    trainer replays its record into the restarted one, whose policy continues the same draws."""
    doc = yaml.safe_load(ENAS_EXAMPLE.read_text())
    manifest = shipped("enas", evaluations=8)
    manifest["spec"]["oneShot"]["sampling"] = doc["spec"]["oneShot"]["sampling"]
    manifest["spec"]["oneShot"]["enas"] = {"pathsPerBatch": 4, "batchesPerEpoch": 2, "warmupEpochs": 0}
    manifest["spec"]["oneShot"]["supernetSettings"] = {"epochs": 30, "timeBudgetS": 120}
    manifest["spec"]["artifacts"]["path"] = "runs"
    kube.apply_experiment(manifest)

    # phase 1: rewards reach the policy; then the controller's process dies (its pod, and IP, stay)
    wait_for("rewards told to the controller", lambda: rewards_told(kube, "enas") or None, timeout=180, every=0.1)
    assert one_shot(kube, "enas")["phase"] == "Supernet"
    (pod,) = kube.pods(f"{names.LABEL_COMPONENT}={names.COMPONENT_CONTROLLER},{names.LABEL_EXPERIMENT}=enas")
    faults.kill(namespace, pod.metadata.name, 137, container=names.CONTROLLER_CONTAINER)
    # the new process was replayed by the trainer, then took rewards again
    wait_for("rewards told after the restart", lambda: rewards_told(kube, "enas") or None, timeout=120, every=0.1)
    address = controller_address(kube, "enas")
    assert address is not None
    counts = controller_requests(address)
    assert counts.get(f"{paths.REPLAY_PATH} 200", 0) >= 1, counts

    kube.wait_phase("enas", timeout=300)
    status = check_outcome(kube, "enas", store, 8)
    metrics = status["oneShot"]["supernet"]["metrics"]
    assert metrics["policy_replays"] >= 1, metrics  # the restarted controller got the trainer's record

    # the record beside the checkpoint: one reward per rewarded path, each its own
    exp = kube.experiment("enas")
    assert exp is not None
    spec = SearchExperimentSpec.model_validate(exp["spec"])
    lines = (store / "runs" / "enas" / names.supernet_name("enas") / RECORD_FILE).read_text().splitlines()
    recorded = [json.loads(line) for line in lines]
    rewarded = [p for p in recorded if "tellSequence" in p]
    assert len(rewarded) == metrics["rewarded_paths"] > 4
    assert sorted(p["tellSequence"] for p in rewarded) == list(range(len(rewarded)))
    scores = [p["reward"] for p in rewarded if p["reward"] is not None]
    assert all(0.0 <= s <= 1.0 for s in scores) and len(set(scores)) > 1, scores  # per path, not a mean
    # the policy continued through the crash: the record is what one unbroken policy draws and learns
    config = policy_config(spec, supernet_seed(spec))
    assert config is not None
    PathPolicy(config, [path_from_wire(p) for p in recorded])  # raises ReplayError on any other path


#: a one-shot command whose ``train`` reports success without writing a checkpoint; ``evaluate`` is the
#: real trainer's, which then cannot load the supernet
NO_CHECKPOINT = (
    'case "$1" in train) echo \'{"val_accuracy": 0.5}\' > "$KUBENAS_RESULT_FILE";; '
    '*) exec python3 -m kubenas_trainer.oneshot "$@";; esac'
)


@pytest.mark.usefixtures("store")
def test_an_evaluator_that_cannot_load_the_checkpoint_fails_the_experiment(
    kube: Kube, kubenas_operator: OperatorProcess
) -> None:
    manifest = shipped("nockpt", evaluations=4)
    manifest["spec"]["oneShot"]["command"] = ["sh", "-c", NO_CHECKPOINT, "oneshot"]
    kube.apply_experiment(manifest)
    exp = kube.wait_phase("nockpt", timeout=180)
    assert exp["status"]["phase"] == "Failed", exp["status"]
    failed = condition(exp, "Failed")
    assert failed["reason"] == "EvaluatorFailed", failed
    assert names.evaluator_name("nockpt") in failed["message"]
    assert "supernet" in failed["message"] and "exit code 1" in failed["message"], failed["message"]
    # the evaluate command's own error is quoted (its log's tail is the termination message)
    assert "cannot load the supernet" in failed["message"].split("):", 1)[1], failed["message"]
    assert one_shot(kube, "nockpt")["supernet"]["succeeded"]
    assert not kube.trials("nockpt")  # nothing was retrained
    deployment = kube.apps.read_namespaced_deployment(names.evaluator_name("nockpt"), kube.namespace)
    assert deployment.spec.replicas == 0  # not left crash-looping

"""A one-shot search's objects on Kubernetes (pure builders) and the executor's pure parts: the supernet's
record from its pods and Job, the evaluation record in ConfigMaps, the ``status.oneShot`` figures."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.controller.paths import CONFIG_ENV, TOKEN_ENV, URL_ENV, authorized, paths_token
from kubenas.controller.progress import token_matches
from kubenas.core.driver import AttemptEnded, AttemptStarted, Create, TrialLost
from kubenas.core.enas import PolicyConfig, policy_config
from kubenas.core.errors import SpecError
from kubenas.core.oneshot import SupernetRecord, evaluation_spec, supernet_seed
from kubenas.core.records import TrialRecord
from kubenas.operator import names
from kubenas.operator.manifests import ExperimentRef, ProgressChannel
from kubenas.operator.oneshot import (
    EVALUATOR_FAILURES,
    evaluations_wire,
    evaluator_failure,
    score,
    supernet_events_record,
    supernet_from_status,
    supernet_wire,
)
from kubenas.operator.oneshot_manifests import (
    CHUNK,
    evaluator_deployment,
    needs_controller,
    read_record,
    record_config_map,
    record_patches,
    supernet_job,
)

REF = ExperimentRef("ns", "exp", "uid-1")
OPS = ["none", "skip_connect", "nor_conv_3x3"]


def spec(**one_shot: Any) -> SearchExperimentSpec:
    return SearchExperimentSpec.model_validate(
        {
            "searchSpace": {"cell": {"nodes": 3, "operations": OPS}},
            "strategy": {"name": "evolution", "seed": 2},
            "objective": {"metric": "val_accuracy"},
            "oneShot": {"evaluations": 10, "topK": 2, **one_shot},
            "budget": {"maxTrials": 2},
            "artifacts": {"persistentVolumeClaim": "store"},
            "trialTemplate": {
                "image": "trainer:1",
                "command": ["kubenas-trainer"],
                "args": ["--verbose"],
                "settings": {"epochs": 3, "width": 8},
                "deadlineSeconds": 60,
                "resources": {"limits": {"nvidia.com/gpu": 1}},
            },
        }
    )


def evaluation(index: int, value: float | None, arch: dict[str, str] | None = None) -> TrialRecord:
    arch = arch or {"edge_1_0": OPS[index % 3], "edge_2_0": "nor_conv_3x3", "edge_2_1": OPS[(index + 1) % 3]}
    phase = "Succeeded" if value is not None else "Failed"
    return TrialRecord(
        index=index,
        architecture=arch,
        name=f"exp-eval-{index:05d}",
        phase=phase,
        reward=value,
        metrics={"val_accuracy": value} if value is not None else {},
        tell_sequence=index,
        asks_before_tell=index + 1,
    )


def test_the_supernet_job_trains_with_the_supernet_settings_into_the_artifact_store() -> None:
    job = supernet_job(REF, spec(supernetSettings={"epochs": 20}))
    assert job["metadata"]["name"] == "exp-supernet"
    assert "activeDeadlineSeconds" not in job["spec"]  # a trial's deadline is not the supernet's
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["command"] == ["python3", "-m", "kubenas_trainer.oneshot", "train"] and "args" not in container
    assert env["KUBENAS_SETTINGS"] == '{"epochs":20,"width":8}'
    assert env["KUBENAS_OUTPUT_DIR"] == "/kubenas/output/exp/exp-supernet"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels[names.LABEL_TRIAL] == "exp-supernet" and labels[names.LABEL_COMPONENT] == "trainer"


def test_an_enas_supernet_job_gets_the_path_channel_to_the_controller_and_a_uniform_one_does_not() -> None:
    channel = ProgressChannel.of(REF, ("10.0.0.7", 8080), "secret")
    enas = spec(sampling="enas", enas={"pathsPerBatch": 4, "warmupEpochs": 1})
    assert needs_controller(enas) and not needs_controller(spec())
    container = supernet_job(REF, enas, channel)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env[URL_ENV] == "http://10.0.0.7:8080 http://exp-controller.ns.svc:8080"  # the progress channel's addresses
    assert env[TOKEN_ENV] == paths_token("secret", "exp-supernet") and env["KUBENAS_TRIAL"] == "exp-supernet"
    assert authorized("secret", "exp-supernet", env[TOKEN_ENV])
    assert not token_matches("secret", "exp-supernet", env[TOKEN_ENV])  # not a progress credential
    config = PolicyConfig.from_wire(json.loads(env[CONFIG_ENV]))
    assert config == policy_config(enas, supernet_seed(enas))
    assert config.seed == int(env["KUBENAS_SEED"]) and config.enas.paths_per_batch == 4
    assert [e["name"] for e in container["env"]].count(URL_ENV) == 1
    # uniform sampling: no path channel, with or without the controller's address
    for job in (supernet_job(REF, spec()), supernet_job(REF, spec(), channel)):
        names_ = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert not names_ & {URL_ENV, TOKEN_ENV, CONFIG_ENV}
    with pytest.raises(SpecError, match=r"spec\.oneShot\.sampling"):
        supernet_job(REF, enas)  # the executor waits for the controller rather than train without paths


def test_the_evaluator_runs_the_evaluate_command_behind_the_http_bridge_in_the_trial_pod() -> None:
    deployment = evaluator_deployment(REF, spec(recalibrationBatches=6))
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == [
        "kubenas",
        "controller",
        "evaluator",
        "--port",
        "8080",
        "--message-file",
        "/dev/termination-log",
        "--",
        "python3",
        "-m",
        "kubenas_trainer.oneshot",
        "evaluate",
        "--checkpoint",
        "/kubenas/output/exp/exp-supernet",
        "--recalibration-batches",
        "6",
        "--finetune-steps",
        "20",
    ]
    assert container["image"] == "trainer:1" and container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "kubenas-output", "persistentVolumeClaim": {"claimName": "store"}} in pod["spec"]["volumes"]
    # fine-tuned scores by default (20 steps); finetuneSteps: 0 scores the inherited weights as they are
    plain = evaluator_deployment(REF, spec(recalibrationBatches=6, finetuneSteps=0))
    plain_command = plain["spec"]["template"]["spec"]["containers"][0]["command"]
    assert plain_command == container["command"][:-2]
    assert pod["spec"]["restartPolicy"] == "Always"
    # a start that fails: the front writes why as the termination message (else its log's tail is used)
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    contract = [e["name"] for e in container["env"] if e["name"].startswith("KUBENAS_")]
    assert contract == [names.TOKEN_ENV]  # no trial contract (no trial), only the token requests carry
    token = next(e for e in container["env"] if e["name"] == names.TOKEN_ENV)
    assert token["valueFrom"]["secretKeyRef"]["name"] == "exp-controller"
    # its own selector: neither the controller Service nor the trainer watches pick the evaluator up
    labels = pod["metadata"]["labels"]
    assert labels[names.LABEL_COMPONENT] == "evaluator" and names.LABEL_TRIAL not in labels
    assert deployment["spec"]["selector"]["matchLabels"] == names.evaluator_selector("exp")
    assert deployment["spec"]["replicas"] == 1  # one evaluator unless more are asked for


def test_several_evaluators_are_as_many_pods_and_the_strategy_proposes_as_many_at_a_time() -> None:
    four = spec(evaluators=4)
    assert evaluator_deployment(REF, four)["spec"]["replicas"] == 4
    assert evaluation_spec(four).budget.parallel_trials == 4
    assert evaluation_spec(spec()).budget.parallel_trials == 1
    with pytest.raises(ValueError, match="evaluators must not exceed evaluations"):
        spec(evaluators=11)  # 10 evaluations


class FakeEvaluator:
    """An evaluator pod: answers one candidate at a time after ``delay`` seconds, or fails on ``fail_on``."""

    def __init__(self, delay: float, busy: list[int], fail_on: int | None = None) -> None:
        self.delay, self.busy, self.fail_on = delay, busy, fail_on
        self.scored: list[int] = []

    async def evaluate(self, index: int, architecture: dict[str, Any]) -> dict[str, Any]:
        self.busy[0] += 1
        self.busy[1] = max(self.busy[1], self.busy[0])
        try:
            await asyncio.sleep(self.delay)
            if index == self.fail_on:
                raise ConnectionError(f"evaluator gone while scoring {index}")
            self.scored.append(index)
            return {"index": index, "exitCode": 0, "result": {"val_accuracy": index / 10}}
        finally:
            self.busy[0] -= 1


def creates(count: int) -> list[Create]:
    return [Create(evaluation(i, 0.0), f"arch-{i}", i) for i in range(count)]


def test_candidates_are_scored_side_by_side_and_answered_in_the_order_proposed() -> None:
    busy = [0, 0]  # in flight now, most at once
    quick, slow = FakeEvaluator(0.001, busy), FakeEvaluator(0.02, busy)
    answers = asyncio.run(score([slow, quick], creates(6)))  # type: ignore[list-item]
    assert [a["index"] for a in answers] == list(range(6))  # the driver hears them as proposed
    assert busy[1] == 2  # both pods at once, each one candidate at a time
    assert sorted(slow.scored + quick.scored) == list(range(6))
    assert len(quick.scored) > len(slow.scored)  # the quicker pod takes the next candidate
    # fewer candidates than evaluators: one each, the others idle
    lone = FakeEvaluator(0.0, [0, 0])
    assert [a["index"] for a in asyncio.run(score([lone, FakeEvaluator(0.0, [0, 0])], creates(1)))] == [0]  # type: ignore[list-item]


def test_one_evaluator_failing_stops_the_others_and_fails_the_pass() -> None:
    busy = [0, 0]
    failing, other = FakeEvaluator(0.001, busy, fail_on=0), FakeEvaluator(0.05, busy)

    async def main() -> None:
        with pytest.raises(ConnectionError, match="scoring 0"):
            await score([failing, other], creates(4))  # type: ignore[list-item]
        await asyncio.sleep(0.1)  # a lane left running would score on after the pass failed

    asyncio.run(main())
    assert busy[0] == 0 and other.scored == []


def test_the_record_round_trips_through_config_maps_in_chunks_up_to_the_first_gap() -> None:
    records = [evaluation(i, 0.5 + i / 1000) for i in range(CHUNK + 3)]
    patches = record_patches("exp", records)
    assert sorted(patches) == [0, 1] and len(patches[0]) == CHUNK and len(patches[1]) == 3
    maps = [record_config_map(REF, chunk, data) for chunk, data in patches.items()]
    assert [m["metadata"]["name"] for m in maps] == ["exp-evaluations-0", "exp-evaluations-1"]
    assert sum(len(v) for m in maps for v in m["data"].values()) < 1_000_000  # a ConfigMap holds 1 MiB
    back = read_record(maps)
    assert [(r.index, r.architecture, r.reward, r.tell_sequence) for r in back] == [
        (r.index, r.architecture, r.reward, r.tell_sequence) for r in records
    ]
    del maps[0]["data"]["00007"]  # a gap: what follows it is not history
    assert [r.index for r in read_record(maps)] == list(range(7))


def test_the_supernet_record_follows_the_trial_rule_and_survives_the_status() -> None:
    fresh = SupernetRecord()
    running = supernet_events_record(fresh, [AttemptStarted(0, 1)], pods=1, retries=2)
    assert (running.attempts, running.succeeded, running.failed) == (1, False, False)
    done = supernet_events_record(running, [AttemptEnded(0, 1, 0, '{"val_accuracy": 0.4}')], pods=1, retries=2)
    assert done.succeeded and dict(done.metrics) == {"val_accuracy": 0.4}
    assert supernet_from_status({"supernet": supernet_wire(done)}) == done
    refused = supernet_events_record(running, [AttemptEnded(0, 1, 2, None)], pods=1, retries=2)
    assert refused.failed and refused.reason == "ConfigurationError"
    lost = supernet_events_record(running, [TrialLost(0, "RetriesExhausted", "gave up", 3)], pods=3, retries=2)
    assert lost.failed and lost.attempts == 3 and lost.reason == "RetriesExhausted"
    assert supernet_from_status(None) == SupernetRecord()


def test_the_status_shows_counts_the_top_k_by_one_shot_score_and_the_parameter_free_share() -> None:
    best = {"edge_1_0": "none", "edge_2_0": "skip_connect", "edge_2_1": "none"}
    second = {"edge_1_0": "nor_conv_3x3", "edge_2_0": "nor_conv_3x3", "edge_2_1": "skip_connect"}
    records = [evaluation(0, 0.3), evaluation(1, 0.9, best), evaluation(2, None), evaluation(3, 0.8, second)]
    records.append(evaluation(4, 0.9, best))  # the same cell again: the top k is distinct
    shot = evaluations_wire(spec(), records)
    assert shot["evaluations"] == {"told": 5, "succeeded": 4, "failed": 1, "target": 10}
    assert [c["evaluation"] for c in shot["top"]] == ["exp-eval-00001", "exp-eval-00003"]
    assert shot["bestScore"] == 0.9
    assert shot["parameterFree"] == round(4 / 6, 4)  # none, skip, none; skip: 4 of the 6 edges


def evaluator_pod(restarts: int, state: dict[str, Any], last: dict[str, Any] | None = None) -> dict[str, Any]:
    status = {"name": "evaluator", "restartCount": restarts, "state": state, "lastState": last or {}}
    other = {"name": "sidecar", "restartCount": 9, "state": {}, "lastState": {"terminated": {"exitCode": 1}}}
    return {"metadata": {"name": "exp-evaluator-abc"}, "status": {"containerStatuses": [other, status]}}


def test_an_evaluator_that_keeps_failing_to_start_fails_the_search_quoting_its_message() -> None:
    error = "FileNotFoundError: no supernet checkpoint in /kubenas/output/exp/exp-supernet"
    crashed = {"terminated": {"exitCode": 1, "reason": "Error", "message": "Traceback ...\n" + error}}
    backoff = {"waiting": {"reason": "CrashLoopBackOff"}}
    assert evaluator_failure([]) is None
    assert evaluator_failure([evaluator_pod(0, {"running": {}})]) is None  # loading
    assert evaluator_failure([evaluator_pod(0, crashed)]) is None  # one failure: it may still come up
    assert evaluator_failure([evaluator_pod(EVALUATOR_FAILURES - 2, backoff, crashed)]) is None
    message = evaluator_failure([evaluator_pod(EVALUATOR_FAILURES - 1, backoff, crashed)])
    assert message is not None and "exp-evaluator-abc" in message and message.endswith(error)
    assert f"failed {EVALUATOR_FAILURES} times" in message and "exit code 1" in message
    assert evaluator_failure([evaluator_pod(EVALUATOR_FAILURES - 1, crashed, crashed)]) is not None
    assert evaluator_failure([evaluator_pod(EVALUATOR_FAILURES - 1, {"running": {}}, crashed)]) is None  # loading again
    # restarts that ended well (a pod that loaded, then was restarted) are not a failure to start
    fine = {"terminated": {"exitCode": 0}}
    assert evaluator_failure([evaluator_pod(EVALUATOR_FAILURES + 2, {"running": {}}, fine)]) is None
    long = {"terminated": {"exitCode": 1, "message": "x" * 5000 + error}}
    quoted = evaluator_failure([evaluator_pod(EVALUATOR_FAILURES, backoff, long)])
    assert quoted is not None and quoted.endswith(error) and len(quoted) < 800

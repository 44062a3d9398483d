"""GPUs: what a trial asks for, torchrun for several, and local mode's isolation on a faked device count."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.gpus import launcher_command, starts_torchrun, trial_gpus
from kubenas.local.gpus import ENV_GPU_COUNT, GpuError, GpuPool, plan, probe_devices
from kubenas.local.runner import ResumeError, prepare
from kubenas.operator import manifests
from tests.conftest import experiment_dict, run_locally

GPU = "nvidia.com/gpu"
EXP = manifests.ExperimentRef("team-a", "cells", "uid-exp")

#: a trial that records which GPUs it was given and when it ran, then reports a metric
RECORDING_TRIAL = """
import json, os, sys, time
start = time.time()
time.sleep(float(json.loads(os.environ["KUBENAS_SETTINGS"]).get("sleep_s", 0.5)))
out = os.environ["KUBENAS_OUTPUT_DIR"]
record = {"gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()}
open(os.path.join(out, "gpus.json"), "w").write(json.dumps(record))
open(os.environ["KUBENAS_RESULT_FILE"], "w").write(json.dumps({"val_accuracy": 0.5}))
"""


def spec(template: dict[str, Any] | None = None, parallel: int = 2) -> SearchExperimentSpec:
    doc = experiment_dict(budget={"maxTrials": 6, "parallelTrials": parallel})
    doc["spec"]["trialTemplate"] = {"image": "trainer:1", "command": ["kubenas-trainer"], **(template or {})}
    return SearchExperimentSpec.model_validate(doc["spec"])


def gpus(n: int) -> dict[str, Any]:
    return {"resources": {"limits": {GPU: n}}}


def test_gpus_come_from_the_short_form_or_the_trainer_container() -> None:
    assert trial_gpus(spec(gpus(2)).trial_template).count == 2
    assert trial_gpus(spec(gpus(2)).trial_template).field == f"spec.trialTemplate.resources.limits[{GPU}]"
    assert trial_gpus(spec().trial_template).count == 0
    pod = {"spec": {"containers": [{"name": "sidecar"}, {"name": "trainer", "resources": {"limits": {GPU: "4"}}}]}}
    request = trial_gpus(spec({"image": None, "template": pod}).trial_template)
    assert request.count == 4
    assert request.field == f"spec.trialTemplate.template.spec.containers[1].resources.limits[{GPU}]"


def test_several_gpus_start_torchrun_one_process_each() -> None:
    assert launcher_command(["kubenas-trainer"], 1) == ["kubenas-trainer"]
    wrapped = launcher_command(["python", "-m", "kubenas_trainer.main"], 4)
    assert wrapped[0] == "torchrun" and "--standalone" in wrapped
    assert wrapped[wrapped.index("--nproc-per-node") + 1] == "4"
    assert wrapped[-4:] == ["--no-python", "python", "-m", "kubenas_trainer.main"]
    own = ["python", "-m", "torch.distributed.run", "--nproc-per-node", "2", "train.py"]
    assert starts_torchrun(own) and launcher_command(own, 2) == own
    assert starts_torchrun(["/opt/conda/bin/torchrun", "train.py"])


def test_a_multi_gpu_job_runs_torchrun_with_shared_memory() -> None:
    def pod(s: SearchExperimentSpec) -> dict[str, Any]:
        trial = manifests.trial_object(EXP, s, 0, {"edge_1_0": "none"}, "edge_1_0=none")
        return manifests.trainer_job(EXP, s, trial)["spec"]["template"]["spec"]

    single = pod(spec(gpus(1)))
    assert single["containers"][0]["command"] == ["kubenas-trainer"]
    assert all(v["name"] != manifests.SHM_VOLUME for v in single["volumes"])
    multi = pod(spec({**gpus(2), "args": ["--fast"]}))
    (container,) = multi["containers"]
    assert container["command"][:1] == ["torchrun"] and container["command"][-1] == "kubenas-trainer"
    assert container["args"] == ["--fast"]  # the trainer's arguments follow the wrapped command
    assert {"name": manifests.SHM_VOLUME, "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert {"name": manifests.SHM_VOLUME, "emptyDir": {"medium": "Memory"}} in multi["volumes"]


def test_the_probe_reads_the_fake_count_then_visible_devices_then_nvidia_smi(tmp_path: Path, monkeypatch) -> None:
    assert probe_devices({ENV_GPU_COUNT: "3", "CUDA_VISIBLE_DEVICES": "5"}) == ["0", "1", "2"]
    assert probe_devices({"CUDA_VISIBLE_DEVICES": "2, 5"}) == ["2", "5"]
    assert probe_devices({"CUDA_VISIBLE_DEVICES": ""}) == []
    with pytest.raises(GpuError, match=ENV_GPU_COUNT):
        probe_devices({ENV_GPU_COUNT: "two"})
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-a)'\necho '  MIG 1g.10gb Device 0: (UUID: MIG-b)'\n"
        "echo 'GPU 1: NVIDIA H100 (UUID: GPU-c)'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert probe_devices({}) == ["0", "1"]
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert probe_devices({}) == []


def test_a_trial_asking_for_more_gpus_than_the_machine_has_is_refused() -> None:
    with pytest.raises(GpuError, match=r"resources\.limits\[nvidia\.com/gpu\].*asks for 3 GPUs.*has 2 GPUs"):
        plan(spec(gpus(3)), {ENV_GPU_COUNT: "2"})
    with pytest.raises(GpuError, match="has 0 GPUs"):
        plan(spec(gpus(1)), {ENV_GPU_COUNT: "0"})
    assert plan(spec(), {ENV_GPU_COUNT: "0"}).pool is None  # no GPU asked: nothing to check or share


def test_parallel_trials_are_capped_by_the_devices() -> None:
    s = spec(gpus(2), parallel=4)
    assert plan(s, {ENV_GPU_COUNT: "5"}).limit(s).budget.parallel_trials == 2
    assert plan(s, {ENV_GPU_COUNT: "8"}).limit(s) is s
    assert plan(spec(parallel=4), {}).limit(spec(parallel=4)).budget.parallel_trials == 4


def test_the_pool_hands_out_disjoint_devices_and_waits_for_a_release() -> None:
    pool = GpuPool(["0", "1", "2"])
    assert pool.acquire("a", 2) == ["0", "1"]
    got: list[list[str]] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire("b", 2)))
    waiter.start()
    time.sleep(0.2)
    assert not got  # one device free, two asked: it waits
    pool.release("a")
    pool.release("a")  # idempotent: stopper and follower both release
    waiter.join(timeout=5)
    assert got == [["0", "1"]] and pool.free == 1  # the lowest free ids first
    with pytest.raises(GpuError):
        pool.acquire("c", 4)


def test_local_trials_get_disjoint_gpus_and_never_more_at_once(tmp_path: Path, monkeypatch) -> None:
    script = tmp_path / "trial.py"
    script.write_text(RECORDING_TRIAL)
    doc = experiment_dict(
        budget={"maxTrials": 6, "parallelTrials": 4},
        trialTemplate={"command": [sys.executable, str(script)], "settings": {"sleep_s": 0.6}, **gpus(1)},
    )
    monkeypatch.setenv(ENV_GPU_COUNT, "2")
    result, folder = run_locally(tmp_path, doc)
    assert result.phase == "Succeeded"
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("trials/*/output/gpus.json"))]
    assert len(records) == 6 and {r["gpus"] for r in records} <= {"0", "1"}
    for r in records:  # any two trials that overlapped in time held different GPUs, and at most two overlapped
        overlapping = [o for o in records if o["start"] < r["end"] and r["start"] < o["end"]]
        assert len(overlapping) <= 2
        assert len({o["gpus"] for o in overlapping}) == len(overlapping)
    assert len({r["gpus"] for r in records}) == 2  # both devices were used


def test_a_run_asking_for_too_many_gpus_refuses_to_start(tmp_path: Path, monkeypatch) -> None:
    doc = experiment_dict(trialTemplate={"command": [sys.executable, "-m", "kubenas.local.toy_trial"], **gpus(2)})
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv(ENV_GPU_COUNT, "1")
    with pytest.raises(ResumeError, match=r"spec\.trialTemplate\.resources\.limits\[nvidia\.com/gpu\]"):
        prepare(path, tmp_path / "out", None)
    assert not (tmp_path / "out").exists()


def test_a_bad_candidate_under_torchrun_is_final_though_torchrun_exits_1() -> None:
    """torchrun exits 1 when its process exits 3; the result rank 0 wrote still says bad_candidate."""
    from kubenas.operator import outcomes
    from kubenas.operator.views import JobView, PodView

    def pod(code: int, message: str) -> PodView:
        terminated = {"exitCode": code, "message": message}
        body = {"metadata": {"name": "p"}, "status": {"containerStatuses": [{"name": "trainer", "state": {}}]}}
        body["status"]["containerStatuses"][0]["state"] = {"terminated": terminated}
        return PodView.parse(body)

    job = JobView.parse({"metadata": {"name": "exp-00000"}, "spec": {}})
    bad = pod(1, json.dumps({"status": "bad_candidate", "message": "no path from input to output"}))
    (ended,) = outcomes.events_of(0, [bad], job)
    assert ended.exit_code == 1 and outcomes.decided([ended])
    crashed = pod(1, json.dumps({"message": "settings.epochs: must be positive"}))
    assert outcomes.events_of(0, [crashed], job) == []  # other exits: the Job retries, its verdict decides

"""budget.maxGpuHours: GPU time counted by the driver, the experiment ended and running trials
cancelled when it runs out, the time kept on each result and shown in status."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.codec import record_from_wire, trial_wire
from kubenas.core.driver import (
    AttemptEnded,
    AttemptStarted,
    Cancel,
    Candidate,
    Driver,
    Finish,
    Proposed,
    ResultStored,
    Store,
    Tick,
)
from kubenas.core.engine import decide
from kubenas.core.records import TrialRecord
from tests.conftest import experiment_dict, run_locally, running_status

GPU = {"limits": {"nvidia.com/gpu": 2}}


def spec(
    hours: float | None = 0.01, parallel: int = 2, resources: dict[str, Any] | None = None
) -> SearchExperimentSpec:
    budget: dict[str, Any] = {"maxTrials": 10, "parallelTrials": parallel}
    if hours is not None:
        budget["maxGpuHours"] = hours
    template = {"command": ["t"], "resources": GPU if resources is None else resources}
    return SearchExperimentSpec.model_validate(experiment_dict(budget=budget, trialTemplate=template)["spec"])


def started(driver: Driver, count: int) -> None:
    driver.start()
    driver.handle(Proposed(tuple(Candidate(i, {"x": i}) for i in range(count))))
    driver.handle(*(AttemptStarted(i, 1) for i in range(count)))


def test_a_result_carries_its_wall_time_times_the_gpus_asked() -> None:
    driver = Driver(spec(hours=None))
    driver.handle(Tick(10.0))
    started(driver, 2)
    commands = driver.handle(Tick(40.0), AttemptEnded(0, 1, 0, json.dumps({"val_accuracy": 0.5})))
    (store,) = [c for c in commands if isinstance(c, Store)]
    assert store.trial.gpu_seconds == pytest.approx(60.0)  # 30 s on 2 GPUs
    assert driver.gpu_seconds_used == pytest.approx(120.0)  # and trial 1 has run 30 s on 2 GPUs too
    back = record_from_wire(trial_wire(store.trial, "t"))
    assert back.gpu_seconds == pytest.approx(60.0)


def test_the_budget_ends_the_experiment_and_cancels_the_running_trials() -> None:
    driver = Driver(spec(hours=0.01))  # 36 GPU-seconds: two trials on 2 GPUs each, 9 s
    started(driver, 2)
    assert driver.seconds_to_deadline() == pytest.approx(9.0)
    commands = driver.handle(Tick(4.0), AttemptEnded(0, 1, 0, json.dumps({"val_accuracy": 0.7})))
    driver.handle(ResultStored(0), Proposed((Candidate(2, {"x": 2}),)))
    driver.handle(AttemptStarted(2, 1))  # at 4 s, on the GPUs trial 0 freed
    assert driver.finished is None
    assert driver.seconds_to_deadline() == pytest.approx(5.0)  # 8 + 8 used, 20 left at 4 GPU-seconds/s
    commands = driver.handle(Tick(9.5))
    cancels = [c for c in commands if isinstance(c, Cancel)]
    (finish,) = [c for c in commands if isinstance(c, Finish)]
    assert (finish.phase, finish.reason) == ("Succeeded", "GpuHoursExhausted")
    assert "maxGpuHours=0.01" in finish.message
    assert sorted(c.trial.index for c in cancels) == [1, 2]
    assert [c.trial.reason for c in cancels] == ["Cancelled", "Cancelled"]
    assert cancels[0].trial.gpu_seconds == pytest.approx(19.0)  # 9.5 s on 2 GPUs
    assert driver.gpu_seconds_done >= 36


def test_without_a_succeeded_trial_the_ended_experiment_fails() -> None:
    driver = Driver(spec(hours=0.001, parallel=1))
    started(driver, 1)
    (finish,) = [c for c in driver.handle(Tick(5.0)) if isinstance(c, Finish)]
    assert (finish.phase, finish.reason) == ("Failed", "NoTrialSucceeded")
    assert "GPU-hours" in finish.message


def test_a_rebuilt_driver_counts_the_gpu_time_of_the_history() -> None:
    history = [
        TrialRecord(
            index=0,
            architecture={"x": 0},
            phase="Succeeded",
            reward=0.5,
            tell_sequence=0,
            asks_before_tell=1,
            gpu_seconds=30.0,
            metrics={"val_accuracy": 0.5},
        ),
        TrialRecord(index=1, architecture={"x": 1}, phase="Running", attempts=1),
    ]
    driver = Driver(spec(hours=0.01), history, elapsed_seconds=100.0)
    assert driver.gpu_seconds_done == 30.0
    assert driver.seconds_to_deadline() == pytest.approx(3.0)  # 6 GPU-seconds left, one trial on 2 GPUs
    assert decide(spec(hours=0.01), [history[0].with_(gpu_seconds=40.0)]).reason == "GpuHoursExhausted"  # type: ignore[union-attr]


def test_trials_without_gpus_record_no_gpu_time_and_the_budget_needs_a_gpu_limit() -> None:
    driver = Driver(spec(hours=None, resources={}))
    started(driver, 1)
    (store,) = [c for c in driver.handle(Tick(5.0), AttemptEnded(0, 1, 0, "{}")) if isinstance(c, Store)]
    assert store.trial.gpu_seconds is None
    with pytest.raises(ValidationError, match="maxGpuHours counts the GPUs"):
        spec(hours=1.0, resources={})


def test_status_shows_used_and_limit() -> None:
    s = spec(hours=0.5)
    driver = Driver(s)
    st = running_status(s, driver, gpu_hours=0.125)
    assert st["gpuHours"] == {"used": 0.125, "limit": 0.5}


def test_local_mode_ends_a_run_when_its_gpu_hours_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBENAS_LOCAL_GPUS", "2")  # two trials at once, one (faked) GPU each
    doc = experiment_dict(
        budget={"maxTrials": 20, "parallelTrials": 2, "maxGpuHours": 0.003},  # 10.8 GPU-seconds
        trialTemplate={
            "command": [sys.executable, "-m", "kubenas.local.toy_trial"],
            "settings": {"sleep_s": 1.0},
            "resources": {"limits": {"nvidia.com/gpu": 1}},
        },
    )
    result, folder = run_locally(tmp_path, doc)
    assert result.reason == "GpuHoursExhausted", result
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["trials"] < 20
    assert summary["gpuHours"] >= 0.003
    rows = json.loads((folder / "trials.json").read_text())
    assert any(r["reason"] == "Cancelled" for r in rows)  # the running ones were stopped

"""Faults and bad input never leave an experiment stuck.

* The API server and etcd restart in the middle of a run: the operator rides it out, nothing is lost
  or doubled.
* The operator is killed again and again during a sequential run (marked ``slow``): the trials and
  the best are those of an unbroken run with the same seed.
* Random mutations of the examples (hypothesis): whatever the API server accepts, the real operator
  runs to Succeeded, or to Failed with a condition that says why, or keeps something running. Never
  a crashed operator, never an experiment that sits in Running (or without a status) with nothing
  running for longer than a grace period.
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from kubernetes.client.exceptions import ApiException

from kubenas.operator import names
from kubenas_dev.cluster.launcher import Cluster
from kubenas_dev.operator_fixtures import crds, kube, kubenas_operator
from kubenas_dev.operator_testing import TOY_TRIAL, Kube, OperatorProcess, condition, experiment_manifest, wait_for
from tests.admission.corpus import examples, mutated

from .test_operator_recovery import assert_whole_history, succeeded, unbroken_sequential

__all__ = ["crds", "kube", "kubenas_operator"]

TERMINAL = ("Succeeded", "Failed")


def assert_same_as_unbroken(exp: dict[str, Any], trials: list[dict[str, Any]], manifest: dict[str, Any]) -> None:
    """The trials (as a set, or in order for a sequential run) and the best of an unbroken run."""
    unbroken = unbroken_sequential(manifest)
    if manifest["spec"]["budget"]["parallelTrials"] == 1:
        assert [t["spec"]["architecture"] for t in trials] == [dict(r.architecture) for r in unbroken]
    else:  # a seeded random strategy proposes the same candidates whatever order results come in
        assert {t["spec"]["architectureId"] for t in trials} == {
            ",".join(f"{k}={v}" for k, v in r.architecture.items()) for r in unbroken
        }
    best = max(unbroken, key=lambda r: (r.reward, -r.index))
    assert exp["status"]["bestTrial"]["architecture"] == dict(best.architecture)
    assert exp["status"]["bestReward"] == best.reward


# -- the control plane restarts ---------------------------------------------------------------------


def test_api_server_and_etcd_restart_mid_run_loses_and_doubles_nothing(
    kube: Kube, kubenas_operator: OperatorProcess, cluster: Cluster
) -> None:
    manifest = experiment_manifest(
        "cpr", max_trials=12, parallel=2, strategy={"name": "random", "seed": 7}, settings={"sleep_s": 1.0}
    )
    kube.apply_experiment(manifest)
    wait_for("three results", lambda: succeeded(kube, "cpr") >= 3, timeout=120)
    cluster.restart("etcd", "kube-apiserver", down_seconds=3.0)  # trials end while nothing can record it
    assert succeeded(kube, "cpr") < 12, "the run ended before the restart: nothing was tested"
    exp = kube.wait_phase("cpr", timeout=300)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    assert kubenas_operator.proc is not None and kubenas_operator.proc.poll() is None, "the operator died"
    trials = assert_whole_history(kube, "cpr", 12)
    assert_same_as_unbroken(exp, trials, manifest)


# -- the operator killed again and again ------------------------------------------------------------

#: 20 kills during 200 sequential trials: about a minute on an idle machine, several on a busy one;
#: KUBENAS_CHAOS_TRIALS sets another size (docs/validation.md)
CHAOS_TRIALS = int(os.environ.get("KUBENAS_CHAOS_TRIALS", "200"))
CHAOS_KILLS = 20


@pytest.mark.slow
def test_repeated_operator_kills_end_with_the_trials_and_best_of_an_unbroken_run(
    kube: Kube, kubenas_operator: OperatorProcess
) -> None:
    manifest = experiment_manifest(
        "chaos",
        max_trials=CHAOS_TRIALS,
        parallel=1,
        strategy={"name": "evolution", "seed": 23, "evolution": {"populationSize": 6, "sampleSize": 3}},
    )
    kube.apply_experiment(manifest)
    jitter = random.Random(CHAOS_KILLS)  # kills land at different points of a pass: ask, create, tell, store
    kills = 0
    for k in range(1, CHAOS_KILLS + 1):
        target = k * CHAOS_TRIALS // (CHAOS_KILLS + 1)
        wait_for(f"{target} results", lambda t=target: succeeded(kube, "chaos") >= t, timeout=120, every=0.5)
        time.sleep(jitter.uniform(0.0, 1.0))
        if succeeded(kube, "chaos") >= CHAOS_TRIALS:
            break  # a fast machine finished the run between two kills: what was killed so far counts
        kubenas_operator.kill()
        kubenas_operator.start()
        kills += 1
    assert kills >= CHAOS_KILLS // 2, f"only {kills} kills landed before the run ended: nothing much was tested"
    exp = kube.wait_phase("chaos", timeout=300)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    trials = assert_whole_history(kube, "chaos", CHAOS_TRIALS)
    assert_same_as_unbroken(exp, trials, manifest)


# -- random mutations of the examples through the real operator ------------------------------------

MUTANTS = 100  # manifests tried per run; about four in five are refused by the API server
GRACE_S = 75.0  # the longest an unfinished experiment may go with no trial running (controller start included)
#: the mutants that end do so within about 90 s (2 to 4 trials of the toy); one still running at the
#: deadline passes if it is busy (a pod running or waiting to be placed), so a longer wait buys little
DEADLINE_S = 180.0


#: a one-shot example's supernet cut to seconds (its trainer is the real one: the toy trial speaks no
#: supernet protocol); uncut, one accepted one-shot mutant kept the test waiting for its deadline
TINY_SUPERNET = {"epochs": 1, "width": 4, "stages": 1, "cellsPerStage": 1, "timeBudgetS": 60}


def runnable(doc: dict[str, Any]) -> dict[str, Any]:
    """An example made cheap before it is mutated: the toy trial, three trials, a short trial deadline,
    a tiny supernet and few evaluations."""
    doc = copy.deepcopy(doc)
    spec = doc["spec"]
    spec["trialTemplate"].update(command=TOY_TRIAL, deadlineSeconds=60)
    spec["budget"] = {"maxTrials": 3, "parallelTrials": 2, "maxFailedTrials": 2}
    if "oneShot" in spec:
        spec["oneShot"].update(supernetSettings=TINY_SUPERNET, evaluations=6, topK=2)
    return doc


RUNNABLE = [runnable(doc) for doc in examples()]


def kept_cheap(doc: dict[str, Any], index: int, taken: set[str]) -> dict[str, Any]:
    """A mutation may raise the budget or reuse a name: cap the one, make the other unique."""
    budget = (doc.get("spec") or {}).get("budget") if isinstance(doc.get("spec"), dict) else None
    if isinstance(budget, dict):
        for key, cap in (("maxTrials", 4), ("parallelTrials", 3)):
            if isinstance(budget.get(key), int) and not isinstance(budget[key], bool) and budget[key] > cap:
                budget[key] = cap
    meta = doc.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("name"), str):
        if meta["name"] in taken:
            meta["name"] = f"mutant-{index}"
        taken.add(meta["name"])
    return doc


@dataclass
class Watched:
    """One accepted experiment, watched until it ends or the test's deadline."""

    name: str
    created: float
    last_busy: float
    phase: str | None = None
    idle_for: float = 0.0
    history: list[str] = field(default_factory=list)


def experiment_pods(kube: Kube, name: str) -> list[Any]:
    return kube.pods(f"{names.LABEL_EXPERIMENT}={name}")


def busy(kube: Kube, name: str) -> bool:
    """Whether a trial of ``name`` is really under way: a trainer pod that has not ended. A Job alone
    is not enough: a Job whose pods the API server refuses stays unfinished with nothing running."""
    pods = kube.pods(f"{names.LABEL_EXPERIMENT}={name},{names.LABEL_TRIAL}")
    return any(p.status.phase in ("Pending", "Running") for p in pods)


def watch(kube: Kube, operator: OperatorProcess, accepted: list[str]) -> Iterator[Watched]:
    """Poll the accepted experiments until each ends, is stuck past the grace period, or time is up."""
    now = time.monotonic()
    pending = {name: Watched(name, now, now) for name in accepted}
    deadline = now + DEADLINE_S
    while pending and time.monotonic() < deadline:
        assert operator.proc is not None and operator.proc.poll() is None, "the operator crashed"
        for name, w in list(pending.items()):
            exp = kube.experiment(name) or {}
            phase = (exp.get("status") or {}).get("phase")
            if phase != w.phase:
                w.history.append(str(phase))
                w.phase = phase
            now = time.monotonic()
            if phase in TERMINAL:
                yield pending.pop(name)
                continue
            if busy(kube, name):
                w.last_busy = now
            w.idle_for = now - w.last_busy
            if w.idle_for > GRACE_S:
                yield pending.pop(name)
        time.sleep(1.0)
    yield from pending.values()


def test_whatever_the_api_server_accepts_runs_or_fails_with_a_condition(
    kube: Kube, kubenas_operator: OperatorProcess
) -> None:
    """Hypothesis draws the manifests; they are submitted one by one and then run side by side."""
    taken: set[str] = set()
    accepted: list[str] = []
    refused: list[str] = []

    @settings(max_examples=MUTANTS, phases=[Phase.generate], deadline=None)  # no shrinking: runs cost minutes
    @given(doc=mutated(RUNNABLE))
    def submit(doc: dict[str, Any]) -> None:
        doc = kept_cheap(doc, len(accepted) + len(refused), taken)
        try:
            kube.apply_experiment(doc)
        except ApiException as exc:
            assert exc.status in (400, 422), f"the API server answered {exc.status} to {doc}: {exc.body}"
            refused.append(json.loads(exc.body or "{}").get("message", "")[:160])
            return
        accepted.append(doc["metadata"]["name"])

    submit()
    tried = len(accepted) + len(refused)
    ended = list(watch(kube, kubenas_operator, accepted))
    problems = []
    for w in ended:
        exp = kube.experiment(w.name) or {}
        if w.phase == "Failed":
            failed = condition(exp, "Failed")
            if failed.get("status") != "True" or not failed.get("reason") or not failed.get("message"):
                problems.append(f"{w.name}: Failed without a condition that says why: {exp.get('status')}")
        elif w.phase != "Succeeded" and w.idle_for > GRACE_S:
            problems.append(f"{w.name}: {w.phase} with nothing running for {w.idle_for:.0f}s: {exp.get('status')}")
    stuck = sum(1 for w in ended if w.phase not in TERMINAL and w.idle_for > GRACE_S)
    figures = {
        "tried": tried,
        "refused": len(refused),
        "accepted": len(accepted),
        "succeeded": sum(w.phase == "Succeeded" for w in ended),
        "failed": sum(w.phase == "Failed" for w in ended),
        "stuck": stuck,
        "failed_reasons": sorted(
            condition(kube.experiment(w.name) or {}, "Failed").get("reason", "") for w in ended if w.phase == "Failed"
        ),
        "running_at_deadline": {
            w.name: {
                "phases": w.history,
                "pods": {p.metadata.name: p.status.phase for p in experiment_pods(kube, w.name)},
            }
            for w in ended
            if w.phase not in TERMINAL
        },
    }
    print("mutation figures:", json.dumps(figures), "\nrefused:", "\n".join(refused), sep="\n")
    assert accepted, "every mutation was refused: nothing ran"
    assert not problems, "\n".join(problems)
    assert all(w.phase in TERMINAL or busy(kube, w.name) for w in ended), [(w.name, w.history) for w in ended]


def test_a_trial_template_naming_a_missing_priority_class_fails_the_experiment(
    kube: Kube, kubenas_operator: OperatorProcess
) -> None:
    """Admission cannot know which PriorityClasses exist; the Job controller's pod creations are
    refused (403) for as long as it is missing. The experiment must end Failed, naming it."""
    manifest = experiment_manifest("noclass", max_trials=2, parallel=1, template={"priorityClassName": "no-such"})
    kube.apply_experiment(manifest)
    wait_for("the trial's Job", lambda: kube.jobs("noclass"), timeout=120)
    exp = kube.wait_phase("noclass", timeout=90)
    assert exp["status"]["phase"] == "Failed"
    assert "no-such" in condition(exp, "Failed")["message"]

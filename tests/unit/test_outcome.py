"""Judging finished trial attempts: the one rule local mode and the operator share."""

from __future__ import annotations

import json

from kubenas.core.outcome import judge


def result(**kw: object) -> str:
    return json.dumps(kw)


def test_success_records_numeric_metrics_only() -> None:
    out = judge(0, result(val_accuracy=0.9, params=10, status="completed", message="ok", note="x"), 1, 2)
    assert out.verdict == "succeeded"
    assert out.metrics == {"val_accuracy": 0.9, "params": 10.0}


def test_partial_result_is_kept_and_marked() -> None:
    out = judge(0, result(val_accuracy=0.5, status="partial"), 1, 2)
    assert (out.verdict, out.reason) == ("succeeded", "Partial")


def test_a_diverged_result_is_kept_and_marked() -> None:
    out = judge(0, result(val_accuracy=0.1, status="diverged", message="training diverged"), 1, 2)
    assert (out.verdict, out.reason, out.message) == ("succeeded", "Diverged", "training diverged")


def test_bad_candidate_is_never_retried() -> None:
    assert judge(3, None, 1, 5).verdict == "bad_candidate"
    assert judge(0, result(status="bad_candidate"), 1, 5).verdict == "bad_candidate"


def test_kills_and_crashes_retry_until_the_budget_then_fail() -> None:
    assert (judge(137, None, 1, 2).verdict, judge(137, None, 1, 2).reason) == ("retry", "Killed")
    assert judge(-9, None, 2, 2).verdict == "retry"
    out = judge(1, None, 3, 2)
    assert (out.verdict, out.reason) == ("failed", "Error")


def test_missing_or_malformed_result_fails_clearly() -> None:
    assert judge(0, None, 1, 0).reason == "MissingResult"
    out = judge(0, "{not json", 1, 0)
    assert (out.verdict, out.reason) == ("failed", "InvalidResult")

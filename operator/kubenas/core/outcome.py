"""How a finished trial process (or container) is judged: one rule for local mode and the operator.

Inputs are what any runtime gives: the exit code and the text of the result file (the termination
message in a pod). The verdict says whether to record metrics, retry, or fail for good.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Literal

#: the trainer refused its configuration (an unknown or invalid setting): no retry can help
CONFIG_ERROR_EXIT_CODE = 2
BAD_CANDIDATE_EXIT_CODE = 3
KILLED_EXIT_CODE = 137

Verdict = Literal["succeeded", "bad_candidate", "retry", "failed"]
#: the reason a result with metrics carries, by its status: ``partial`` (stopped early by a deadline or
#: a signal) and ``diverged`` (training ended on a non-finite loss: a poor candidate, whose non-finite
#: metrics the result leaves out; the driver counts it as the worst result, never as a failure)
_SUCCEEDED_REASONS = {"partial": "Partial", "diverged": "Diverged"}
#: the reason of a trial that ran but whose objective the candidate made meaningless
DIVERGED = "Diverged"


@dataclass(frozen=True)
class Outcome:
    """What to do with a finished attempt."""

    verdict: Verdict
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    message: str | None = None


class ResultFormatError(ValueError):
    """The result file is not the JSON object the trial contract asks for."""


def parse_result(text: str) -> tuple[dict[str, float], str, str | None]:
    """``(metrics, status, message)`` from the JSON a trial wrote (see docs/trial-contract.md)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultFormatError(f"result is not JSON: {exc.msg} at {exc.pos}") from None
    if not isinstance(data, dict):
        raise ResultFormatError("result must be a JSON object")
    status = data.get("status", "completed")
    if not isinstance(status, str):
        raise ResultFormatError("status must be a string")
    message = data.get("message")
    metrics = {
        k: float(v)
        for k, v in data.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }
    return metrics, status, message if isinstance(message, str) else None


def reports_bad_candidate(result_text: str | None) -> bool:
    """Whether a result says ``bad_candidate``: final whatever the exit code (a launcher such as torchrun
    exits 1 when its process exits 3)."""
    try:
        return parse_result(result_text or "")[1] == "bad_candidate"
    except ResultFormatError:
        return False


def judge(exit_code: int | None, result_text: str | None, attempts: int, retries: int) -> Outcome:
    """The verdict for an attempt that ended with ``exit_code`` after ``attempts`` tries (1-based).

    A negative exit code is a signal (as Python reports a child killed by one); 128+n is the shell/Kubernetes form.
    Bad candidates and configuration errors (exit 2) are never retried; kills and crashes are retried
    while attempts <= retries.
    """
    metrics: dict[str, float] = {}
    status, message = "completed", None
    parse_error: str | None = None
    if result_text and result_text.strip():
        try:
            metrics, status, message = parse_result(result_text)
        except ResultFormatError as exc:
            parse_error = str(exc)

    if exit_code == BAD_CANDIDATE_EXIT_CODE or status == "bad_candidate":
        return Outcome("bad_candidate", metrics, "BadCandidate", message or "the trainer refused the architecture")
    if exit_code == CONFIG_ERROR_EXIT_CODE:
        return Outcome("failed", {}, "ConfigurationError", message or "the trial refused its configuration (exit 2)")
    if exit_code == 0:
        if parse_error:
            return Outcome("failed", {}, "InvalidResult", parse_error)
        if not metrics:
            return Outcome("failed", {}, "MissingResult", "the trial exited 0 but wrote no metrics")
        return Outcome("succeeded", metrics, _SUCCEEDED_REASONS.get(status), message)
    killed = exit_code is None or exit_code < 0 or exit_code == KILLED_EXIT_CODE or exit_code > 128
    reason = "Killed" if killed else "Error"
    detail = f"exit code {exit_code}" + (f": {message}" if message else "")
    if attempts <= retries:
        return Outcome("retry", {}, reason, detail)
    return Outcome("failed", {}, reason, f"{detail} after {attempts} attempts")

"""Typed errors of the trainer, each mapped to the exit code the trial contract gives it.

The operator decides whether to retry a trial from its exit code alone, so the distinction matters:
a candidate that cannot be built or trained (exit 3) is never retried, while a broken setting or a
missing dataset (exit 2) is a configuration fault that a retry will not fix either but that is not the
architecture's fault, so it must not be recorded as a bad candidate.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_BAD_CANDIDATE = 3


class TrainerError(Exception):
    """Base of every error the trainer raises on purpose; ``field`` names what it concerns."""

    exit_code: int = EXIT_CONFIG

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ContractError(TrainerError):
    """An environment variable of the trial contract is missing or is not valid JSON of the right shape."""


class SettingsError(TrainerError):
    """A value in ``KUBENAS_SETTINGS`` (or a hyperparameter overriding it) is invalid."""


class DatasetError(TrainerError):
    """A dataset is unknown, missing or malformed; ``field`` is the dataset setting or the bad path."""


class BadCandidate(TrainerError):
    """The architecture cannot be built or trained: unknown operation, no path, out of memory, ...

    Raising it makes the trainer exit with code 3, which the operator records as ``BadCandidate``
    without retrying the trial.
    """

    exit_code = EXIT_BAD_CANDIDATE

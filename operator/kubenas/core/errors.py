"""Typed errors of the core. Each one names the field or object it concerns."""

from __future__ import annotations


class KubenasError(Exception):
    """Base of every error Kubenas raises on purpose."""


class SpecError(KubenasError, ValueError):
    """A definition (search space, strategy settings, experiment spec) is invalid.

    ``field`` is a dotted path from the resource root, e.g. ``spec.searchSpace.cell.nodes``,
    so the message points at the line to fix.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ReplayError(KubenasError):
    """Replaying a recorded history produced a different decision than the one recorded.

    Raised when a strategy is rebuilt from history and its n-th ask differs from the n-th trial:
    the strategy (or its settings, or its seed) is not the one that made the history.
    """

    def __init__(self, index: int, expected: str, got: str) -> None:
        self.index = index
        super().__init__(f"ask #{index}: history has {expected!r} but the strategy now proposes {got!r}")

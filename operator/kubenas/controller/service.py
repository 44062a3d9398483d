"""The controller's logic without HTTP: one experiment's Search, driven by ask, tell and replay.

The service keeps no truth of its own. Its search is rebuilt from the history the operator posts
(``replay``); everything it says is derivable from that history, which is why the operator can
delete this pod at any time and a replayed one continues exactly where it stopped.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.controller import protocol
from kubenas.core.errors import KubenasError, ReplayError
from kubenas.core.records import TrialRecord
from kubenas.core.search import Search


class ControllerError(KubenasError):
    """A request the service refuses; ``code`` is one of the protocol's error codes."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class ControllerService:
    """One experiment's search. Not thread-safe: the server serializes calls."""

    def __init__(self, experiment: str = "") -> None:
        self.experiment = experiment
        self.instance = uuid.uuid4().hex
        self.search: Search | None = None
        self.replays = 0

    # -- reading ---------------------------------------------------------------------------
    def state(self) -> protocol.State:
        if self.search is None:
            return protocol.State(self.instance, False, 0, 0)
        trials = self.search.trials
        return protocol.State(self.instance, True, len(trials), sum(1 for t in trials if t.told))

    def _search(self) -> Search:
        if self.search is None:
            raise ControllerError(protocol.NOT_CONFIGURED, "no experiment loaded yet: replay first")
        return self.search

    # -- driving ---------------------------------------------------------------------------
    def replay(self, experiment: str, spec: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> protocol.State:
        """Rebuild the search from ``spec`` and the recorded ``trials`` (any order; replay sorts)."""
        try:
            parsed = SearchExperimentSpec.model_validate(spec)
            history = [protocol.record_from_json(t) for t in trials]
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            raise ControllerError(protocol.BAD_REQUEST, f"invalid replay request: {exc}") from None
        try:
            search = Search(parsed, history, name_prefix=experiment)
        except ReplayError as exc:
            raise ControllerError(protocol.REPLAY_MISMATCH, str(exc)) from None
        except ValueError as exc:  # a gap in the history
            raise ControllerError(protocol.REPLAY_MISMATCH, str(exc)) from None
        self.experiment = experiment
        self.search = search
        self.replays += 1
        return self.state()

    def ask(self, index: int, count: int) -> list[dict[str, Any]]:
        """Candidates ``index`` .. ``index+count-1``, asking the strategy only for new ones."""
        search = self._search()
        if count < 1 or index < 0:
            raise ControllerError(protocol.BAD_REQUEST, "index must be >= 0 and count >= 1")
        asked = len(search.trials)
        if index > asked:
            raise ControllerError(
                protocol.OUT_OF_SYNC, f"asked for candidate #{index} but only {asked} were asked: replay first"
            )
        out = []
        for i in range(index, index + count):
            record = search.trials[i] if i < len(search.trials) else search.ask()
            out.append(protocol.record_to_json(record, search.space.canonical(record.architecture)))
        return out

    def tell(
        self, index: int, name: str | None, metrics: Mapping[str, float] | None, failed: bool, reason: str | None
    ) -> dict[str, Any]:
        """Record a finished trial; a repeated tell returns the recorded one unchanged."""
        search = self._search()
        if not 0 <= index < len(search.trials):
            raise ControllerError(
                protocol.OUT_OF_SYNC, f"tell for candidate #{index} but {len(search.trials)} were asked: replay first"
            )
        known: TrialRecord = search.trials[index]
        if name and known.name != name:
            raise ControllerError(
                protocol.OUT_OF_SYNC, f"candidate #{index} is {known.name!r} here, not {name!r}: replay first"
            )
        try:
            clean = None if metrics is None else {str(k): float(v) for k, v in metrics.items()}
        except (TypeError, ValueError) as exc:
            raise ControllerError(protocol.BAD_REQUEST, f"metrics must map names to numbers: {exc}") from None
        record = search.tell(index, clean, failed=failed, reason=reason)
        return protocol.record_to_json(record, search.space.canonical(record.architecture))

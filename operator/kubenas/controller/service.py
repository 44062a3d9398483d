"""The controller's logic without HTTP: one experiment's strategy, driven by ask, tell and replay.

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
from kubenas.core.codec import record_from_wire, record_of
from kubenas.core.errors import KubenasError, ReplayError
from kubenas.core.search import OutOfOrder, Search


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
        return protocol.State(self.instance, True, self.search.asked, self.search.told)

    def _search(self) -> Search:
        if self.search is None:
            raise ControllerError(protocol.NOT_CONFIGURED, "no experiment loaded yet: replay first")
        return self.search

    # -- driving ---------------------------------------------------------------------------
    def replay(self, experiment: str, spec: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> protocol.State:
        """Rebuild the search from ``spec`` and the recorded ``trials`` (any order; replay sorts)."""
        try:
            parsed = SearchExperimentSpec.model_validate(spec)
            history = [record_from_wire(t) for t in trials]
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            raise ControllerError(protocol.BAD_REQUEST, f"invalid replay request: {exc}") from None
        try:
            search = Search(parsed, history)
        except (ReplayError, ValueError) as exc:  # another strategy's history, or a gap in it
            raise ControllerError(protocol.REPLAY_MISMATCH, str(exc)) from None
        self.experiment = experiment
        self.search = search
        self.replays += 1
        return self.state()

    def ask(self, index: int, count: int) -> list[dict[str, Any]]:
        """Candidates ``index`` .. ``index+count-1``, asking the strategy only for new ones."""
        if count < 1 or index < 0:
            raise ControllerError(protocol.BAD_REQUEST, "index must be >= 0 and count >= 1")
        try:
            candidates = self._search().ask(index, count)
        except OutOfOrder as exc:
            raise ControllerError(protocol.OUT_OF_SYNC, f"{exc}: replay first") from None
        return [protocol.candidate_to_json(c) for c in candidates]

    def tell(self, index: int, status: Mapping[str, Any]) -> bool:
        """Tell the strategy the result of candidate ``index``; False if it was told already."""
        search = self._search()
        try:
            spec = {"experiment": self.experiment, "index": index, "architecture": {}, "architectureId": ""}
            record = record_of("", spec, status)
        except (ValidationError, ValueError) as exc:
            raise ControllerError(protocol.BAD_REQUEST, f"invalid result: {exc}") from None
        try:
            return search.tell(index, record.observation())
        except OutOfOrder as exc:
            raise ControllerError(protocol.OUT_OF_SYNC, f"{exc}: replay first") from None

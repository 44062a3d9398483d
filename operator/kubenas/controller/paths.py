"""The ENAS path channel's controller side: the supernet trainer pulls paths and pushes per-path rewards.

With ``oneShot.sampling: enas`` the supernet's paths come from the LSTM policy held here
(:class:`kubenas.core.enas.PathPolicy`). Endpoints (JSON, POST):

- ``/paths/replay`` ``{"trial", "config", "paths": [Path]}`` → ``{"state"}``: (re)build the policy from
  its config (:class:`~kubenas.core.enas.PolicyConfig`: space, seed, ENAS settings) and the paths
  recorded so far, replayed by the core's rules. A trainer sends it when it starts (an empty record:
  a fresh policy, also for a second attempt) and whenever the controller answers ``NotConfigured``
  (it restarted, or another trial replayed since).
- ``/paths`` ``{"trial", "index", "count"}`` → ``{"paths": [Path], "state"}``: paths ``index`` ..
  ``index+count-1`` drawn from the policy; those drawn already come back as recorded.
- ``/rewards`` ``{"trial", "rewards": [{"index", "reward"}]}`` → ``{"paths": [Path], "state"}``: each
  path's own reward (a number, or null for a path that cannot be built), told in the order given;
  the answer carries each path's record with its tell position, which the trainer keeps.

A Path is ``{"index", "architecture"}`` plus, once rewarded, ``reward``, ``tellSequence`` and
``asksBeforeTell`` (:func:`kubenas.core.enas.path_to_wire`). **The record is the trainer's**: it
holds every path and reward it received and replays them into a controller that lost them, so the
controller stays what it is for trials, a cache of history. A trainer killed and started again
trains the supernet from scratch and replays an empty record.

Authorization is the push channel's pattern: ``Authorization: Bearer HMAC(token, "kubenas-paths" +
trial)`` (:func:`paths_token`), a credential of its own purpose, so a trial's progress credential
draws no paths and a path credential tells no trial results.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from kubenas.controller import protocol
from kubenas.controller.progress import TRIAL_NAME, token_matches, trial_token
from kubenas.controller.service import ControllerError
from kubenas.core.enas import PathPolicy, PolicyConfig, UnknownPath, path_from_wire, path_to_wire
from kubenas.core.errors import ReplayError

REPLAY_PATH = "/paths/replay"
PATHS_PATH = "/paths"
REWARDS_PATH = "/rewards"
ENDPOINTS = (REPLAY_PATH, PATHS_PATH, REWARDS_PATH)
#: the most paths one request may draw or reward
MAX_BATCH = 4096
_PURPOSE = b"kubenas-paths\0"


def paths_token(secret: str, trial: str) -> str:
    """The supernet trainer's credential for the path channel (what the runner puts in its environment)."""
    return trial_token(secret, trial, _PURPOSE)


def authorized(secret: str, trial: str, given: str) -> bool:
    return token_matches(secret, trial, given, _PURPOSE)


def trial_of(data: Mapping[str, Any]) -> str:
    trial = data.get("trial")
    if not isinstance(trial, str) or not TRIAL_NAME.match(trial):
        raise ControllerError(protocol.BAD_REQUEST, "trial: must be the trial's name (a DNS-1123 label)")
    return trial


@dataclass(frozen=True)
class PathState:
    instance: str
    configured: bool
    trial: str
    drawn: int
    told: int

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "configured": self.configured,
            "trial": self.trial,
            "drawn": self.drawn,
            "told": self.told,
        }


class PathService:
    """One experiment's path policy, for the trial that last replayed it. Not thread-safe: the server
    serializes calls with the search's."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.trial = ""
        self.policy: PathPolicy | None = None

    def state(self) -> PathState:
        if self.policy is None:
            return PathState(self.instance, False, self.trial, 0, 0)
        return PathState(self.instance, True, self.trial, self.policy.drawn, self.policy.told)

    def _policy(self, trial: str) -> PathPolicy:
        if self.policy is None or trial != self.trial:
            raise ControllerError(protocol.NOT_CONFIGURED, f"no path policy for trial {trial}: replay first")
        return self.policy

    def replay(self, trial: str, config: Mapping[str, Any], paths: Sequence[Any]) -> PathState:
        try:
            parsed = PolicyConfig.from_wire(config)
            history = [path_from_wire(p) for p in paths]
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            raise ControllerError(protocol.BAD_REQUEST, f"invalid path replay: {exc}") from None
        try:
            policy = PathPolicy(parsed, history)
        except (ReplayError, ValueError) as exc:
            raise ControllerError(protocol.REPLAY_MISMATCH, str(exc)) from None
        self.trial, self.policy = trial, policy
        return self.state()

    def draw(self, trial: str, index: int, count: int) -> list[dict[str, Any]]:
        if not 1 <= count <= MAX_BATCH:
            raise ControllerError(protocol.BAD_REQUEST, f"count: must be from 1 to {MAX_BATCH}")
        try:
            return [path_to_wire(p) for p in self._policy(trial).draw(index, count)]
        except UnknownPath as exc:
            raise ControllerError(protocol.OUT_OF_SYNC, f"{exc}: replay first") from None

    def reward(self, trial: str, rewards: Sequence[tuple[int, float | None]]) -> list[dict[str, Any]]:
        policy = self._policy(trial)
        try:
            return [path_to_wire(policy.reward(index, reward)) for index, reward in rewards]
        except UnknownPath as exc:
            raise ControllerError(protocol.OUT_OF_SYNC, f"{exc}: replay first") from None


def parse_rewards(data: Mapping[str, Any]) -> list[tuple[int, float | None]]:
    """``[(index, reward)]`` of a ``/rewards`` body: a finite number, or null for a path that cannot be built."""
    raw = data.get("rewards")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_BATCH:
        raise ControllerError(protocol.BAD_REQUEST, f"rewards: must be a list of 1 to {MAX_BATCH} objects")
    out: list[tuple[int, float | None]] = []
    for i, item in enumerate(raw):
        index = item.get("index") if isinstance(item, Mapping) else None
        reward = item.get("reward") if isinstance(item, Mapping) else None
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ControllerError(protocol.BAD_REQUEST, f"rewards[{i}].index: must be a non-negative integer")
        if reward is not None and (
            isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward)
        ):
            raise ControllerError(protocol.BAD_REQUEST, f"rewards[{i}].reward: must be a finite number or null")
        out.append((index, None if reward is None else float(reward)))
    return out


#: the supernet trainer's environment for the path channel (kubenas_trainer.paths reads the same names)
URL_ENV = "KUBENAS_PATHS_URL"
TOKEN_ENV = "KUBENAS_PATHS_TOKEN"
CONFIG_ENV = "KUBENAS_ENAS"


def trainer_env(urls: Sequence[str], secret: str, trial: str, config: PolicyConfig) -> dict[str, str]:
    """What the supernet trainer of an ENAS search needs to reach the policy: the controller's
    addresses, its credential for this trial, and the policy's config."""
    return {
        URL_ENV: " ".join(urls),
        TOKEN_ENV: paths_token(secret, trial),
        CONFIG_ENV: json.dumps(config.to_wire(), separators=(",", ":")),
    }

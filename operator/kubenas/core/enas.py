"""The ENAS path policy of a one-shot search (``oneShot.sampling: enas``): pure, no I/O.

While the supernet trains, its paths are drawn by an LSTM policy (the REINFORCE strategy's
controller, :class:`~kubenas.core.strategies.reinforce.PathSampler`) and the policy learns from each
rewarded path's own validation accuracy on the shared weights. The policy lives with the
experiment's controller; the supernet trainer pulls paths and pushes rewards
(:mod:`kubenas.controller.paths`).

A path is kept like a trial, as a :class:`~kubenas.core.records.TrialRecord` (ask index,
architecture, and once rewarded its reward and tell position), so the policy is rebuilt from the
record by the same replay as a strategy from trials (:func:`kubenas.core.history.replay`, which
checks every re-drawn path against the recorded one). Paths drawn for training steps are asks that
are never told. The policy is a function of :class:`PolicyConfig` and that record, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubenas.api.oneshot import EnasSettings
from kubenas.api.space import SearchSpaceSpec
from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.core.errors import SpecError
from kubenas.core.history import replay
from kubenas.core.records import TrialRecord
from kubenas.core.space import build_space
from kubenas.core.strategies.reinforce import PathSampler


@dataclass(frozen=True)
class PolicyConfig:
    """What the path policy is built from: the space, the seed and the ENAS settings."""

    search_space: SearchSpaceSpec
    seed: int
    enas: EnasSettings

    def to_wire(self) -> dict[str, Any]:
        return {"searchSpace": self.search_space.to_wire(), "seed": self.seed, "enas": self.enas.to_wire()}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> PolicyConfig:
        """The config a trainer posts; ValueError (pydantic's ValidationError) names the field at fault."""
        seed = data.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError("seed: must be a non-negative integer")
        space = SearchSpaceSpec.model_validate(data.get("searchSpace") or {})
        if space.hyperparameters or space.augmentation is not None or (space.cell is None and space.layers is None):
            raise ValueError("searchSpace: a path policy chooses among cell edges and chain layers only")
        return cls(space, seed, EnasSettings.model_validate(data.get("enas") or {}))


def policy_config(spec: SearchExperimentSpec, seed: int) -> PolicyConfig | None:
    """The path policy of a one-shot spec with ``sampling: enas`` (None otherwise), seeded with the
    supernet's seed (:func:`kubenas.core.oneshot.supernet_seed`)."""
    if spec.one_shot is None:
        raise SpecError("spec.oneShot", "the experiment is not a one-shot search")
    enas = spec.one_shot.enas_settings()
    return None if enas is None else PolicyConfig(spec.search_space, seed, enas)


def path_to_wire(record: TrialRecord) -> dict[str, Any]:
    """A path as the protocol and the trainer's record carry it (compact: no trial fields it lacks)."""
    out: dict[str, Any] = {"index": record.index, "architecture": dict(record.architecture)}
    if record.told:
        out |= {
            "reward": record.reward,
            "tellSequence": record.tell_sequence,
            "asksBeforeTell": record.asks_before_tell,
        }
    return out


def path_from_wire(data: Mapping[str, Any]) -> TrialRecord:
    """The record of a path from its wire form (KeyError, TypeError or ValueError when malformed)."""
    architecture = data["architecture"]
    if not isinstance(architecture, Mapping):
        raise TypeError("architecture must be an object")
    index = int(data["index"])
    if "tellSequence" not in data:
        return TrialRecord(index=index, architecture=dict(architecture), phase="Running")
    reward = data.get("reward")
    return TrialRecord(
        index=index,
        architecture=dict(architecture),
        phase="Failed" if reward is None else "Succeeded",
        reward=None if reward is None else float(reward),
        tell_sequence=int(data["tellSequence"]),
        asks_before_tell=int(data["asksBeforeTell"]),
    )


def last_rewarded(paths: Sequence[Mapping[str, Any]], count: int) -> list[dict[str, Any]]:
    """The architectures of the last ``count`` rewarded paths of a record (wire form), in tell order:
    what the policy draws at the end of training, for the collapse guard."""
    rewarded = sorted((p for p in paths if "tellSequence" in p), key=lambda p: int(p["tellSequence"]))
    return [dict(p["architecture"]) for p in rewarded[len(rewarded) - count :]] if count > 0 else []


class UnknownPath(ValueError):
    """A reward for a path that was never drawn, or a draw that skips paths."""


class PathPolicy:
    """The policy and the paths it drew, rebuilt from ``history`` by replay. Not thread-safe."""

    def __init__(self, config: PolicyConfig, history: Sequence[TrialRecord] = ()) -> None:
        self.config = config
        self.space = build_space(config.search_space)
        self.sampler = PathSampler(self.space, config.enas.policy, config.seed)
        if replay(self.sampler, history):
            raise ValueError("the path record misses paths drawn before a reward it holds was told")
        self.paths: list[TrialRecord] = sorted(history, key=lambda r: r.index)
        self.told = sum(1 for r in self.paths if r.told)

    @property
    def drawn(self) -> int:
        return len(self.paths)

    def draw(self, index: int, count: int) -> list[TrialRecord]:
        """Paths ``index`` .. ``index + count - 1``; those drawn already come back as recorded (a trainer
        that lost an answer asks again and gets the same paths)."""
        if index < 0 or count < 0:
            raise UnknownPath("index and count must not be negative")
        if index > self.drawn:
            raise UnknownPath(f"asked for path #{index} but only {self.drawn} were drawn")
        while self.drawn < index + count:
            architecture = self.space.validate(self.sampler.ask())
            self.paths.append(TrialRecord(index=self.drawn, architecture=architecture, phase="Running"))
        return self.paths[index : index + count]

    def reward(self, index: int, reward: float | None) -> TrialRecord:
        """Teach the policy path ``index``'s own reward (None: the path cannot be built, the worst reward
        seen so far stands for it); a path rewarded before keeps its first reward. Returns its record."""
        if not 0 <= index < self.drawn:
            raise UnknownPath(f"reward for path #{index} but {self.drawn} were drawn")
        record = self.paths[index]
        if record.told:
            return record
        record = record.with_(
            phase="Failed" if reward is None else "Succeeded",
            reward=reward,
            tell_sequence=self.told,
            asks_before_tell=self.drawn,
        )
        self.sampler.tell(index, dict(record.architecture), record.observation())
        self.paths[index] = record
        self.told += 1
        return record


__all__ = [
    "PathPolicy",
    "PolicyConfig",
    "UnknownPath",
    "last_rewarded",
    "path_from_wire",
    "path_to_wire",
    "policy_config",
]

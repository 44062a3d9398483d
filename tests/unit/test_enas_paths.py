"""The ENAS path policy: determinism and replay in the core, the path channel over the controller's HTTP
app (credential, replay after a restart, per-path rewards) with the trainer's own client."""

from __future__ import annotations

import pytest

from kubenas.api.oneshot import EnasSettings
from kubenas.api.space import SearchSpaceSpec
from kubenas.api.v1alpha1 import SearchExperimentSpec
from kubenas.controller import paths as channel
from kubenas.controller.progress import trial_token
from kubenas.core.enas import PathPolicy, PolicyConfig, UnknownPath, path_from_wire, path_to_wire, policy_config
from kubenas.core.errors import ReplayError
from kubenas.core.outcome import judge
from kubenas.local.controller import LoopbackController
from kubenas_trainer.paths import PathsClient, PathsUnavailable
from tests.conftest import experiment_dict

SPACE = {"cell": {"nodes": 4, "operations": ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]}}
TRIAL = "exp-supernet"


def config(seed: int = 3) -> PolicyConfig:
    return PolicyConfig(SearchSpaceSpec.model_validate(SPACE), seed, EnasSettings(paths_per_batch=4))


def reward(architecture: dict[str, str]) -> float:
    """A made-up accuracy: convolutions into the output are good."""
    return sum(0.3 for k, v in architecture.items() if k.startswith("edge_3") and v == "nor_conv_3x3") + 0.05


def rounds(policy: PathPolicy, count: int, train: int = 6, rewarded: int = 4) -> None:
    """What a trainer does: draw a round's paths, reward the last ``rewarded`` of them, each its own reward."""
    for _ in range(count):
        drawn = policy.draw(policy.drawn, train + rewarded)
        for path in drawn[train:]:
            policy.reward(path.index, None if path.index % 7 == 0 else reward(dict(path.architecture)))


def test_the_policy_is_a_function_of_config_and_record_and_replays_exactly() -> None:
    unbroken = PathPolicy(config())
    rounds(unbroken, 12)
    assert unbroken.drawn == 120 and unbroken.told == 48
    again = PathPolicy(config())
    rounds(again, 12)
    assert [p.architecture for p in again.paths] == [p.architecture for p in unbroken.paths]

    wire = [path_to_wire(p) for p in unbroken.paths]
    rebuilt = PathPolicy(config(), [path_from_wire(w) for w in wire])
    assert rebuilt.sampler.state_digest() == unbroken.sampler.state_digest()
    assert rebuilt.draw(120, 10) == unbroken.draw(120, 10)  # the next paths of an unbroken run

    with pytest.raises(ReplayError):
        PathPolicy(config(seed=4), rebuilt.paths)  # another seed's record does not replay


def test_rewards_are_per_path_and_move_the_policy() -> None:
    policy = PathPolicy(config())
    rounds(policy, 60)
    told = sorted((p for p in policy.paths if p.told), key=lambda p: p.tell_sequence or 0)
    assert [p.tell_sequence for p in told] == list(range(240))
    assert all(p.reward == reward(dict(p.architecture)) for p in told if p.reward is not None)  # its own reward
    assert all((p.reward is None) == (p.index % 7 == 0) for p in told)
    first = sum(reward(dict(p.architecture)) for p in policy.paths[:60]) / 60
    last = sum(reward(dict(p.architecture)) for p in policy.draw(policy.drawn, 200)) / 200
    assert last > first + 0.05  # it learnt to draw convolutions into the output


def test_draws_and_rewards_are_idempotent_and_checked() -> None:
    policy = PathPolicy(config())
    first = policy.draw(0, 3)
    assert policy.draw(0, 3) == first and policy.drawn == 3
    told = policy.reward(1, 0.5)
    assert policy.reward(1, 0.9) == told and told.reward == 0.5 and policy.told == 1
    with pytest.raises(UnknownPath):
        policy.draw(5, 1)
    with pytest.raises(UnknownPath):
        policy.reward(3, 0.1)


def test_the_config_of_a_spec() -> None:
    def spec(one_shot: dict[str, object]) -> SearchExperimentSpec:
        doc = experiment_dict(searchSpace=SPACE, strategy={"name": "evolution", "seed": 1}, oneShot=one_shot)
        return SearchExperimentSpec.model_validate(doc["spec"])

    found = policy_config(spec({"sampling": "enas", "enas": {"pathsPerBatch": 8}}), 11)
    assert found is not None and found.enas.paths_per_batch == 8 and found.seed == 11
    assert found.enas.policy.tanh_constant == 1.1  # the ENAS defaults, not the search strategy's
    assert PolicyConfig.from_wire(found.to_wire()) == found
    assert policy_config(spec({}), 11) is None  # uniform sampling has no policy
    defaults = policy_config(spec({"sampling": "enas"}), 11)
    assert defaults is not None and defaults.enas == EnasSettings()
    with pytest.raises(ValueError, match="searchSpace"):
        hyper = [{"name": "lr", "type": "float", "low": 0.01, "high": 0.1}]
        PolicyConfig.from_wire({**found.to_wire(), "searchSpace": {**SPACE, "hyperparameters": hyper}})


def client(controller: LoopbackController, token: str | None = None, trial: str = TRIAL) -> PathsClient:
    credential = token if token is not None else channel.paths_token(controller.token, trial)
    return PathsClient([controller.url], credential, trial, config().to_wire(), attempts=1)


def test_the_path_channel_draws_rewards_and_survives_a_controller_restart() -> None:
    with LoopbackController("exp") as first:
        trainer = client(first)
        trainer.start()
        for _ in range(5):
            drawn = trainer.draw(10)
            trainer.reward([(p["index"], reward(p["architecture"])) for p in drawn[6:]])
        record = [dict(p) for p in trainer.record]
        assert [p["index"] for p in record] == list(range(50))
        assert sum("tellSequence" in p for p in record) == 20
        unbroken = trainer.draw(10)

    reference = PathPolicy(config(), [path_from_wire(p) for p in record])
    assert [dict(p.architecture) for p in reference.draw(50, 10)] == [p["architecture"] for p in unbroken]

    with LoopbackController("exp") as restarted:  # a new controller: the policy is gone
        trainer.record = record
        trainer.urls = [restarted.url]
        trainer.token = channel.paths_token(restarted.token, TRIAL)
        again = trainer.draw(10)  # answered 409, so the client replays its record, then draws
        assert trainer.replays == 2 and again == unbroken


def test_the_path_channel_needs_its_own_credential() -> None:
    with LoopbackController("exp") as controller:
        with pytest.raises(PathsUnavailable, match="path token"):
            client(controller, token="wrong").start()
        progress = trial_token(controller.token, TRIAL)  # a progress credential draws no paths
        with pytest.raises(PathsUnavailable, match="path token"):
            client(controller, token=progress).start()
        other = client(controller, trial="exp-00001")
        other.start()  # another trial's credential works for that trial only ...
        mine = client(controller)
        mine.start()  # ... and a replay hands the policy over
        with pytest.raises(PathsUnavailable, match="out of step"):
            mine.reward([(0, 0.5)])  # no path 0 drawn yet: out of step even after a replay
        bad = client(controller)
        bad.start()
        bad.draw(2)
        with pytest.raises(PathsUnavailable, match="finite number"):
            bad._post("/rewards", {"trial": TRIAL, "rewards": [{"index": 0, "reward": "high"}]})


def test_an_unreachable_controller_fails_the_attempt_for_a_retry() -> None:
    with LoopbackController("exp") as gone:
        url = gone.url
    trainer = PathsClient([url], "t", TRIAL, config().to_wire(), attempts=2, backoff=0.01, timeout=2)
    with pytest.raises(PathsUnavailable, match="unreachable") as info:
        trainer.start()
    assert judge(info.value.exit_code, None, 1, 1).verdict == "retry"  # not a configuration fault

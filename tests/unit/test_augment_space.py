"""The augmentation-policy space: admission of bad policies, the expander, and search by every strategy."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from kubenas.api.augment import AUGMENT_OPERATIONS
from kubenas.api.space import SearchSpaceSpec
from kubenas.api.strategy import StrategySpec
from kubenas.core.augment import join_policies, operation_frequencies, policy_of
from kubenas.core.errors import SpecError
from kubenas.core.space import Categorical, build_space
from kubenas.core.strategies import Observation, make_strategy


def _space(**augmentation):
    return build_space(SearchSpaceSpec.model_validate({"augmentation": augmentation}))


def _error_location(exc: ValidationError) -> tuple:
    return exc.errors()[0]["loc"]


@pytest.mark.parametrize(
    ("augmentation", "field"),
    [
        ({"operations": ["rotate", "warp"]}, "operations"),
        ({"operations": ["rotate", "rotate"]}, "operations"),
        ({"operations": []}, "operations"),
        ({"subPolicies": 0}, "subPolicies"),
        ({"subPolicies": 17}, "subPolicies"),
        ({"operationsPerSubPolicy": 0}, "operationsPerSubPolicy"),
        ({"probabilityBins": 1}, "probabilityBins"),
        ({"magnitudeBins": 1}, "magnitudeBins"),
        ({"magnitudeBins": 32}, "magnitudeBins"),
        ({"magnitude": 3}, "magnitude"),
    ],
)
def test_bad_policies_are_refused_naming_the_field(augmentation: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        SearchSpaceSpec.model_validate({"augmentation": augmentation})
    assert _error_location(info.value)[:2] == ("augmentation", field)


def test_the_crd_lists_the_operations_and_bounds_the_bins() -> None:
    from kubenas.api import crd

    schema = next(iter(crd.crds().values()))
    versions = schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    aug = versions["properties"]["spec"]["properties"]["searchSpace"]["properties"]["augmentation"]
    assert aug["properties"]["operations"]["items"]["enum"] == list(AUGMENT_OPERATIONS)
    assert aug["properties"]["operations"]["x-kubernetes-list-type"] == "set"
    assert aug["properties"]["probabilityBins"]["minimum"] == 2
    assert aug["properties"]["magnitudeBins"]["maximum"] == 31


def test_an_augmentation_space_alone_is_a_search_space() -> None:
    space = _space()
    assert len(space) == 5 * 2 * 3
    assert space.names[:6] == ("aug_0_0_op", "aug_0_0_prob", "aug_0_0_mag", "aug_0_1_op", "aug_0_1_prob", "aug_0_1_mag")
    op, prob, mag = (space[n] for n in space.names[:3])
    assert isinstance(op, Categorical) and op.choices == AUGMENT_OPERATIONS
    assert prob.values() == tuple(range(11)) and mag.values() == tuple(range(10))
    assert space.families["augmentation"]["subPolicies"] == 5


def test_joint_search_orders_cell_then_augmentation_then_hyperparameters() -> None:
    spec = SearchSpaceSpec.model_validate(
        {
            "cell": {"nodes": 3},
            "augmentation": {"subPolicies": 1, "operationsPerSubPolicy": 1, "operations": ["rotate", "cutout"]},
            "hyperparameters": [{"name": "lr", "type": "float", "low": 0.01, "high": 0.1, "log": True}],
        }
    )
    space = build_space(spec)
    assert space.names == ("edge_1_0", "edge_2_0", "edge_2_1", "aug_0_0_op", "aug_0_0_prob", "aug_0_0_mag", "lr")


def test_a_hyperparameter_may_not_take_a_generated_name() -> None:
    with pytest.raises((ValidationError, SpecError)):
        build_space(
            SearchSpaceSpec.model_validate(
                {
                    "augmentation": {"subPolicies": 1},
                    "hyperparameters": [{"name": "aug_0_0_op", "type": "categorical", "choices": ["a", "b"]}],
                }
            )
        )


def test_canonical_ids_round_trip() -> None:
    space = _space(subPolicies=3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = space.sample(rng)
        assert space.parse(space.canonical(arch)) == arch


def test_policy_of_turns_bins_into_probabilities_and_magnitudes() -> None:
    space = _space(subPolicies=1, probabilityBins=5, magnitudeBins=3)
    arch = {"aug_0_0_op": "rotate", "aug_0_0_prob": 4, "aug_0_0_mag": 1, "aug_0_1_op": "cutout"}
    arch |= {"aug_0_1_prob": 0, "aug_0_1_mag": 2}
    policy = policy_of(space.validate(arch), space.families["augmentation"])
    assert policy == [
        [
            {"operation": "rotate", "probability": 1.0, "magnitude": 0.5, "probabilityBin": 4, "magnitudeBin": 1},
            {"operation": "cutout", "probability": 0.0, "magnitude": 1.0, "probabilityBin": 0, "magnitudeBin": 2},
        ]
    ]
    assert operation_frequencies([policy]) == {"cutout": 0.5, "rotate": 0.5}
    assert operation_frequencies([policy], weighted=True) == {"rotate": 1.0, "cutout": 0.0}
    with pytest.raises(SpecError) as info:
        policy_of({"aug_0_0_op": "rotate"}, space.families["augmentation"])
    assert info.value.field == "architecture.aug_0_0_prob"


def test_joined_policies_hold_every_sub_policy_in_turn() -> None:
    space = _space(subPolicies=2, probabilityBins=3, magnitudeBins=3)
    family = space.families["augmentation"]
    rng = np.random.default_rng(2)
    first, second = space.sample(rng), space.sample(rng)
    joined = join_policies([first, second], family)
    assert len(joined) == 2 * len(first)
    policy = policy_of(joined, {**family, "subPolicies": 4})
    assert policy == policy_of(first, family) + policy_of(second, family)
    with pytest.raises(SpecError) as info:
        join_policies([first, {"aug_0_0_op": "rotate"}], family)
    assert info.value.field == "architecture.aug_0_0_prob"


@pytest.mark.parametrize("strategy", ["random", "grid", "evolution", "tpe", "reinforce", "progressive"])
def test_every_strategy_searches_a_policy(strategy: str) -> None:
    space = _space(subPolicies=2, operations=["rotate", "cutout", "invert"], probabilityBins=3, magnitudeBins=3)
    search = make_strategy(StrategySpec.model_validate({"name": strategy, "seed": 0}), space)
    for i in range(8):
        arch = search.ask()
        assert space.validate(arch) == arch
        # a reward that prefers rotate in the first slot: something for the model-based ones to learn
        search.tell(i, arch, Observation(reward=float(arch["aug_0_0_op"] == "rotate") + 0.1 * arch["aug_0_0_prob"]))

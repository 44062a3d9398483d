"""Search spaces: expansion, canonical ids, encode/decode, sampling and validation errors."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from kubenas.api.space import CellSpace, Decision, LayerChain, SearchSpaceSpec
from kubenas.core.errors import SpecError
from kubenas.core.space import build_space, nb201_string


def nb201() -> SearchSpaceSpec:
    return SearchSpaceSpec(cell=CellSpace())


def mixed() -> SearchSpaceSpec:
    return SearchSpaceSpec(
        layers=LayerChain(layers=2, operations=["conv3x3", "identity"]),
        hyperparameters=[
            Decision(name="lr", type="float", low=1e-4, high=1e-1, log=True),
            Decision(name="width", type="int", low=8, high=64, step=8),
            Decision(name="act", type="categorical", choices=["relu", "gelu", 1, "1"]),
        ],
    )


def test_cell_expands_to_nb201_edges_in_string_order() -> None:
    space = build_space(nb201())
    assert space.names == ("edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2")
    assert space.size == 5**6
    arch = dict(zip(space.names, ["a", "b", "c", "d", "e", "f"], strict=True))
    assert nb201_string(arch) == "|a~0|+|b~0|c~1|+|d~0|e~1|f~2|"


def test_decision_order_is_cell_then_layers_then_hyperparameters() -> None:
    space = build_space(SearchSpaceSpec(cell=CellSpace(nodes=2), **mixed().model_dump(exclude={"cell"})))
    assert space.names == ("edge_1_0", "layer_0", "layer_1", "lr", "width", "act")


def test_canonical_round_trips_and_keeps_types_apart() -> None:
    space = build_space(mixed())
    rng = np.random.default_rng(0)
    for _ in range(200):
        arch = space.sample(rng)
        assert space.parse(space.canonical(arch)) == arch
        assert space.validate(arch) == arch
    a = {"layer_0": "conv3x3", "layer_1": "identity", "lr": 0.01, "width": 16, "act": 1}
    b = {**a, "act": "1"}
    assert space.canonical(a) != space.canonical(b)


def test_rank_unrank_is_a_bijection_on_a_finite_space() -> None:
    space = build_space(SearchSpaceSpec(cell=CellSpace(nodes=3, operations=["none", "skip_connect", "nor_conv_3x3"])))
    ranks = {space.rank(space.unrank(r)) for r in range(space.size or 0)}
    assert ranks == set(range(27))


def test_one_hot_and_indices_shapes() -> None:
    space = build_space(mixed())
    arch = space.sample(np.random.default_rng(1))
    vec = space.one_hot(arch)
    assert vec.shape == (2 + 2 + 1 + 1 + 4,)
    assert ((vec >= 0) & (vec <= 1)).all()
    assert space.size is None  # lr is continuous


def test_neighbours_differ_in_exactly_one_decision() -> None:
    space = build_space(nb201())
    arch = space.sample(np.random.default_rng(2))
    neighbours = list(space.neighbours(arch))
    assert len(neighbours) == 6 * 4
    for n in neighbours:
        assert sum(n[k] != arch[k] for k in arch) == 1


def test_mutation_changes_the_requested_number_of_decisions() -> None:
    space = build_space(nb201())
    rng = np.random.default_rng(3)
    arch = space.sample(rng)
    for k in (1, 2, 3):
        child = space.mutate(arch, rng, k)
        assert sum(child[n] != arch[n] for n in arch) == k


def test_int_and_float_sampling_stay_in_range() -> None:
    space = build_space(mixed())
    rng = np.random.default_rng(4)
    for _ in range(500):
        a = space.sample(rng)
        assert 1e-4 <= a["lr"] <= 1e-1
        assert a["width"] in range(8, 65, 8)


@pytest.mark.parametrize(
    ("arch", "field"),
    [
        ({"edge_1_0": "none"}, "architecture.edge_2_0"),
        (
            {**{f"edge_{i}_{j}": "none" for i in range(1, 4) for j in range(i)}, "edge_9_9": "x"},
            "architecture.edge_9_9",
        ),
        (
            {**{f"edge_{i}_{j}": "none" for i in range(1, 4) for j in range(i)}, "edge_3_2": "conv9"},
            "architecture.edge_3_2",
        ),
    ],
)
def test_validate_names_the_bad_key(arch: dict, field: str) -> None:
    with pytest.raises(SpecError) as err:
        build_space(nb201()).validate(arch)
    assert err.value.field == field


def test_hyperparameter_clashing_with_a_generated_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="taken by the layers"):
        SearchSpaceSpec(
            layers=LayerChain(layers=1), hyperparameters=[Decision(name="layer_0", type="int", low=1, high=3)]
        )

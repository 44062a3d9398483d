"""Every operation, cell and chain builds and runs forward and backward; FLOPs and params are right."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kubenas_trainer.candidate import parse_candidate
from kubenas_trainer.costs import count_flops, count_params, measure_latency_ms
from kubenas_trainer.errors import BadCandidate
from kubenas_trainer.model import Cell, MacroConfig, ReductionBlock, build_network
from kubenas_trainer.ops import ALIASES, OPERATIONS, build_op, canonical_op

from .conftest import RESNET_LIKE

SPACE_NODES = 4


def _cell_arch(ops: dict[tuple[int, int], str], default: str = "skip_connect", nodes: int = SPACE_NODES) -> dict:
    return {f"edge_{i}_{j}": ops.get((i, j), default) for i in range(1, nodes) for j in range(i)}


def _forward_backward(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    x = torch.randn(*shape, requires_grad=True)
    out = model(x)
    out.float().sum().backward()
    return out


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_every_operation_keeps_shape_and_backpropagates(name: str) -> None:
    op = build_op(name, 4)
    out = _forward_backward(op, (2, 4, 5, 5))
    assert out.shape == (2, 4, 5, 5)


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_aliases_name_registry_operations(alias: str) -> None:
    assert canonical_op(alias, "f") in OPERATIONS


def test_unknown_operation_is_a_bad_candidate_naming_the_decision() -> None:
    with pytest.raises(BadCandidate) as info:
        parse_candidate(_cell_arch({(2, 1): "conv7x7"}))
    assert info.value.field == "architecture.edge_2_1"
    assert info.value.exit_code == 3


@pytest.mark.parametrize("name", sorted(set(OPERATIONS) - {"none"}))
def test_cell_of_one_operation_trains(name: str) -> None:
    candidate = parse_candidate(_cell_arch({}, default=name))
    net = build_network(candidate, MacroConfig(in_channels=1, num_classes=3, width=4, stages=2, cells_per_stage=1))
    out = _forward_backward(net, (2, 1, 6, 6))
    assert out.shape == (2, 3)
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_random_cells_of_all_operations_run() -> None:
    ops = sorted(OPERATIONS)
    rng = np.random.default_rng(0)
    built = 0
    for _ in range(12):
        arch = _cell_arch({(i, j): ops[int(rng.integers(len(ops)))] for j, i in itertools.combinations(range(4), 2)})
        try:
            cell = Cell(SPACE_NODES, parse_candidate(arch).edges, 4)
        except BadCandidate:
            continue
        assert _forward_backward(cell, (2, 4, 4, 4)).shape == (2, 4, 4, 4)
        built += 1
    assert built > 0


def test_output_unreachable_from_input_is_a_bad_candidate() -> None:
    all_none = _cell_arch({}, default="none")
    with pytest.raises(BadCandidate, match="no path"):
        build_network(parse_candidate(all_none), MacroConfig(1, 10))
    # node 3 only fed by node 2, which nothing feeds: still no path
    cut = _cell_arch({(3, 2): "nor_conv_3x3"}, default="none")
    with pytest.raises(BadCandidate, match="no path"):
        build_network(parse_candidate(cut), MacroConfig(1, 10))


def test_dead_edges_are_not_built() -> None:
    # node 2 feeds nothing that reaches the output; node 1 is only reached, never read
    arch = _cell_arch({(3, 0): "nor_conv_3x3", (2, 1): "nor_conv_1x1"}, default="none")
    arch["edge_1_0"] = "nor_conv_3x3"
    cell = Cell(SPACE_NODES, parse_candidate(arch).edges, 4)
    assert set(cell.ops.keys()) == {"3_0"}


def test_resnet_like_cell_matches_a_residual_block() -> None:
    cell = Cell(SPACE_NODES, parse_candidate(RESNET_LIKE).edges, 4).eval()
    x = torch.randn(1, 4, 5, 5)
    expected = cell.ops["2_1"](cell.ops["1_0"](x)) + x
    assert torch.allclose(cell(x), expected)


@pytest.mark.parametrize("name", ["conv3x3", "conv5x5", "sep_conv3x3", "max_pool3x3", "identity"])
def test_layer_chain_of_each_chain_operation(name: str) -> None:
    arch = {f"layer_{i}": name for i in range(4)}
    net = build_network(parse_candidate(arch), MacroConfig(in_channels=3, num_classes=5, width=4, stages=2))
    assert _forward_backward(net, (2, 3, 8, 8)).shape == (2, 5)


def test_none_in_a_chain_is_a_bad_candidate() -> None:
    with pytest.raises(BadCandidate) as info:
        build_network(parse_candidate({"layer_0": "conv3x3", "layer_1": "none"}), MacroConfig(3, 5))
    assert info.value.field == "architecture.layer_1"


def test_cell_and_chain_together_and_tabular_inputs() -> None:
    arch = {**RESNET_LIKE, "layer_0": "conv3x3", "layer_1": "identity", "lr": 0.1}
    candidate = parse_candidate(arch)
    assert candidate.hyperparameters == {"lr": 0.1}
    net = build_network(candidate, MacroConfig(in_channels=13, num_classes=3, width=4, stages=3, cells_per_stage=1))
    assert _forward_backward(net, (3, 13, 1, 1)).shape == (3, 3)  # a table fed as 13 x 1 x 1


def test_reduction_halves_any_size() -> None:
    block = ReductionBlock(2, 4)
    for side in (1, 2, 3, 8):
        assert block(torch.randn(2, 2, side, side)).shape[-1] == (side + 1) // 2


def test_flops_equal_pytorch_counter_and_params_are_counted() -> None:
    arch = _cell_arch({(1, 0): "sep_conv_3x3", (2, 1): "nor_conv_5x5", (3, 2): "dil_conv_3x3"})
    net = build_network(parse_candidate(arch), MacroConfig(in_channels=3, num_classes=10, width=8))
    net.eval()
    with FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, 16, 16))
    assert count_flops(net, (3, 16, 16)) == counter.get_total_flops()
    assert count_params(net) == sum(p.numel() for p in net.parameters())
    assert count_params(net) > 0


def test_latency_is_positive_and_leaves_the_mode_alone() -> None:
    net = build_network(parse_candidate(RESNET_LIKE), MacroConfig(1, 10, width=4, stages=1, cells_per_stage=1))
    net.train()
    assert measure_latency_ms(net, torch.zeros(1, 1, 8, 8), runs=2, warmup=1) > 0
    assert net.training

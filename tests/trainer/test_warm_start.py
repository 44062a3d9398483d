"""Warm starts: a child starts from its parent's weights, function-preserving where an edge changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from kubenas_trainer.candidate import parse_candidate
from kubenas_trainer.model import MacroConfig, Network, build_network
from kubenas_trainer.warm_start import warm_start

from .conftest import RESNET_LIKE, contract_env
from .test_main import _run

MACRO = MacroConfig(in_channels=1, num_classes=10, width=8, stages=2, cells_per_stage=1)


def network(architecture: dict[str, str], seed: int, macro: MacroConfig = MACRO) -> Network:
    torch.manual_seed(seed)
    return build_network(parse_candidate(architecture), macro)


def trained_like(model: Network) -> Network:
    """Weights and BN statistics that are not an initialisation (so copying them can be told apart)."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=gen) * 0.3
                tensor.copy_(noise.abs() + 0.5 if "running_var" in name else tensor + noise)
    return model


def save_parent(model: Network, folder: Path, architecture: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "architecture.json").write_text(json.dumps({"architecture": architecture}))
    return folder


def outputs(model: Network, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


X = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))


def test_the_same_architecture_starts_from_every_tensor_of_its_parent(tmp_path: Path) -> None:
    parent = trained_like(network(RESNET_LIKE, 0))
    child = network(RESNET_LIKE, 1)
    start = warm_start(child, save_parent(parent, tmp_path / "p", RESNET_LIKE))
    assert start.loaded and start.copied == start.total and start.copied_params == start.total_params
    for name, tensor in parent.state_dict().items():
        assert torch.equal(child.state_dict()[name], tensor), name
    assert torch.allclose(outputs(child, X), outputs(parent, X))
    assert start.metrics() == {"inherited_tensors": start.total, "inherited_fraction": 1.0}


@pytest.mark.parametrize(
    ("edge", "op", "exact_zeroed"),
    [
        ("edge_3_1", "nor_conv_3x3", True),  # none -> conv: a new edge that starts at zero
        ("edge_2_0", "sep_conv_3x3", True),  # none -> sep conv (its last BN zeroed)
        ("edge_1_0", "nor_conv_5x5", False),  # conv 3x3 -> 5x5: the kernel padded with zeros
    ],
)
def test_a_changed_edge_keeps_the_parents_function(tmp_path: Path, edge: str, op: str, exact_zeroed: bool) -> None:
    parent = trained_like(network(RESNET_LIKE, 0))
    child_arch = {**RESNET_LIKE, edge: op}
    child = network(child_arch, 1)
    fresh = outputs(network(child_arch, 1), X)
    start = warm_start(child, save_parent(parent, tmp_path / "p", RESNET_LIKE))
    assert start.loaded
    assert bool(start.zeroed) == exact_zeroed
    assert start.resized == (0 if exact_zeroed else MACRO.stages * MACRO.cells_per_stage)  # the edge of each cell
    assert torch.allclose(outputs(child, X), outputs(parent, X), atol=1e-5)
    assert not torch.allclose(fresh, outputs(parent, X), atol=1e-3)  # the test could tell them apart


def test_a_conv_replacing_a_skip_starts_fresh_and_the_rest_is_copied(tmp_path: Path) -> None:
    parent = trained_like(network(RESNET_LIKE, 0))
    child = network({**RESNET_LIKE, "edge_3_0": "nor_conv_1x1"}, 1)
    start = warm_start(child, save_parent(parent, tmp_path / "p", RESNET_LIKE))
    assert start.loaded and not start.zeroed and start.copied < start.total
    assert torch.equal(child.state_dict()["stem.0.weight"], parent.state_dict()["stem.0.weight"])
    assert 0.5 < start.metrics()["inherited_fraction"] < 1.0


def test_another_dataset_keeps_everything_but_the_classifier(tmp_path: Path) -> None:
    parent = trained_like(network(RESNET_LIKE, 0))
    child = network(RESNET_LIKE, 1, MacroConfig(in_channels=1, num_classes=3, width=8, stages=2, cells_per_stage=1))
    head = child.state_dict()["head.5.weight"].clone()
    start = warm_start(child, save_parent(parent, tmp_path / "p", RESNET_LIKE) / "model.pt")  # a file works too
    assert start.loaded and start.copied == start.total - 2  # the linear layer's weight and bias
    assert torch.equal(child.state_dict()["head.5.weight"], head)


@pytest.mark.parametrize("broken", ["missing", "garbage", "text", "foreign", "unnamed"])
def test_an_unusable_checkpoint_leaves_the_network_as_it_was(tmp_path: Path, broken: str) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    if broken == "garbage":
        (folder / "model.pt").write_bytes(b"not a checkpoint")
    elif broken == "text":  # torch.load raises KeyError on it, not one of the usual "unreadable" errors
        (folder / "model.pt").write_bytes(b"hello\n")
    elif broken == "unnamed":
        torch.save({0: torch.ones(3)}, folder / "model.pt")
    elif broken == "foreign":
        torch.save({"other.weight": torch.ones(3)}, folder / "model.pt")
    child = network(RESNET_LIKE, 1)
    before = {k: v.clone() for k, v in child.state_dict().items()}
    start = warm_start(child, folder)
    assert not start.loaded and start.metrics() == {}
    assert "training from scratch" in start.message()
    assert all(torch.equal(before[k], v) for k, v in child.state_dict().items())


@pytest.mark.parametrize(
    "described",
    [[1], "str", 3, None, {"architecture": RESNET_LIKE, "searchSpace": [1]}, {"architecture": {"edge_1_0": 5}}],
    ids=["list", "string", "number", "null", "space-a-list", "op-a-number"],
)
def test_an_architecture_json_of_the_wrong_shape_is_ignored(tmp_path: Path, described: Any) -> None:
    parent = trained_like(network(RESNET_LIKE, 0))
    folder = save_parent(parent, tmp_path / "p", RESNET_LIKE)
    (folder / "architecture.json").write_text(json.dumps(described))
    child = network({**RESNET_LIKE, "edge_3_1": "nor_conv_3x3"}, 1)
    start = warm_start(child, folder)  # the weights still load; only the parent's dead edges are unknown
    assert start.loaded and start.copied > 0 and not start.zeroed


def _logs(out: str) -> list[str]:
    events: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [e["message"] for e in events if e["event"] == "log"]


@pytest.mark.usefixtures("keep_signal_handlers")
def test_the_trainer_starts_a_child_from_its_parents_output_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    parent_dir = tmp_path / "parent"
    assert _run(monkeypatch, contract_env(parent_dir, settings={"epochs": 1}, output=True)) == 0
    capsys.readouterr()
    child_arch = {**RESNET_LIKE, "edge_3_1": "nor_conv_1x1"}
    env = contract_env(tmp_path, architecture=child_arch, settings={"epochs": 1}, seed=1)
    env["KUBENAS_INIT_WEIGHTS"] = str(parent_dir / "out")
    assert _run(monkeypatch, env) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["inherited_fraction"] > 0.9 and result["inherited_tensors"] > 0
    (log,) = _logs(capsys.readouterr().out)
    assert "warm start from" in log and "2 new edge(s) starting at zero" in log  # the edge of each of the 2 cells


@pytest.mark.usefixtures("keep_signal_handlers")
def test_a_parent_without_checkpoint_trains_from_scratch(tmp_path: Path, monkeypatch, capsys) -> None:
    env = contract_env(tmp_path, settings={"epochs": 1})
    env["KUBENAS_INIT_WEIGHTS"] = str(tmp_path / "nowhere")
    assert _run(monkeypatch, env) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "completed" and "inherited_tensors" not in result
    (log,) = _logs(capsys.readouterr().out)
    assert "no model.pt" in log and "training from scratch" in log


@pytest.mark.usefixtures("keep_signal_handlers")
def test_a_corrupt_checkpoint_trains_from_scratch(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "model.pt").write_text("hello\n")
    env = contract_env(tmp_path, settings={"epochs": 1})
    env["KUBENAS_INIT_WEIGHTS"] = str(tmp_path / "ws" / "model.pt")
    assert _run(monkeypatch, env) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "completed" and "inherited_tensors" not in result
    (log,) = _logs(capsys.readouterr().out)
    assert "not a readable checkpoint" in log and "training from scratch" in log

"""The supernet: a path computes its stand-alone network, sampling is uniform over buildable candidates,
training and evaluation are deterministic, and the evaluator scores each candidate independently."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from kubenas_trainer.errors import BadCandidate
from kubenas_trainer.model import MacroConfig, build_network
from kubenas_trainer.oneshot import CHECKPOINT_FILE, DESCRIPTION_FILE, Evaluator, main, train_supernet
from kubenas_trainer.settings import Settings
from kubenas_trainer.supernet import SuperNetwork, SuperSpace, recalibrate, standalone_state

CELL_SPACE = {"cell": {"nodes": 3, "operations": ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"]}}
CHAIN_SPACE = {"layers": {"layers": 3, "operations": ["skip_connect", "nor_conv_3x3", "sep_conv_3x3", "avg_pool_3x3"]}}
BOTH = {**CELL_SPACE, **CHAIN_SPACE}
TINY = Settings(
    width=4,
    stages=2,
    cells_per_stage=2,
    epochs=1,
    batch_size=64,
    threads=1,
    dataset="synthetic",
    synthetic_samples=200,
    synthetic_channels=1,
    image_size=6,
)
CONV_CELL = {"edge_1_0": "nor_conv_3x3", "edge_2_0": "skip_connect", "edge_2_1": "nor_conv_1x1"}
SKIP_CELL = {"edge_1_0": "none", "edge_2_0": "skip_connect", "edge_2_1": "nor_conv_3x3"}


def _macro(settings: Settings = TINY) -> MacroConfig:
    return MacroConfig.from_settings(settings, 1, 10)


@pytest.mark.parametrize("space", [CELL_SPACE, CHAIN_SPACE, BOTH], ids=["cell", "chain", "both"])
def test_a_path_computes_what_its_standalone_network_computes(space: dict) -> None:
    torch.manual_seed(0)
    supernet = SuperNetwork(SuperSpace.from_search_space(space), _macro()).eval()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(5, 1, 6, 6)
    for _ in range(4):
        arch = supernet.space.sample(generator)
        candidate = supernet.space.candidate(arch)
        supernet.use(candidate)
        network = build_network(candidate, _macro()).eval()
        network.load_state_dict(standalone_state(supernet, candidate))  # strict: names and shapes agree
        torch.testing.assert_close(network(x), supernet(x))


def test_paths_are_uniform_over_buildable_candidates() -> None:
    space = SuperSpace.from_search_space(CELL_SPACE)
    generator = torch.Generator().manual_seed(0)
    draws = Counter(json.dumps(space.sample(generator), sort_keys=True) for _ in range(5700))
    assert len(draws) == 57  # 64 paths, 7 of which have no route from input to output
    for arch in draws:
        space.candidate(json.loads(arch))  # every one buildable
    assert min(draws.values()) > 60 and max(draws.values()) < 145  # about 100 each


def test_a_space_with_hyperparameters_or_an_operation_outside_it_is_refused() -> None:
    with pytest.raises(BadCandidate, match="hyperparameters"):
        SuperSpace.from_search_space({**CELL_SPACE, "hyperparameters": [{"name": "lr", "type": "float"}]})
    space = SuperSpace.from_search_space(CELL_SPACE)
    with pytest.raises(BadCandidate, match="edge_1_0"):
        space.candidate({**CONV_CELL, "edge_1_0": "avg_pool_3x3"})
    with pytest.raises(BadCandidate, match="no path"):
        space.candidate({"edge_1_0": "none", "edge_2_0": "none", "edge_2_1": "skip_connect"})


def test_recalibration_depends_only_on_the_candidate_and_the_batches() -> None:
    torch.manual_seed(0)
    supernet = SuperNetwork(SuperSpace.from_search_space(CELL_SPACE), _macro())
    batches = [torch.randn(16, 1, 6, 6) for _ in range(3)]
    space = supernet.space

    def stats_after(*archs: dict) -> list[torch.Tensor]:
        for arch in archs:
            supernet.use(space.candidate(arch))
            recalibrate(supernet, batches)
        return [t.clone() for k, t in supernet.state_dict().items() if k.endswith("running_mean")]

    direct = stats_after(CONV_CELL)
    after_other = stats_after(SKIP_CELL, CONV_CELL)
    for a, b in zip(direct, after_other, strict=True):
        torch.testing.assert_close(a, b)
    # the stem's statistics are the plain mean over the batches of its convolution's output
    stem_out = torch.cat([supernet.stem[0](x) for x in batches])
    torch.testing.assert_close(supernet.stem[1].running_mean, stem_out.mean((0, 2, 3)), atol=1e-5, rtol=1e-4)


def test_training_is_deterministic_and_writes_the_checkpoint(tmp_path: Path) -> None:
    first = train_supernet(CELL_SPACE, TINY, 7, tmp_path / "a")
    second = train_supernet(CELL_SPACE, TINY, 7, tmp_path / "b")
    other = train_supernet(CELL_SPACE, TINY, 8, tmp_path / "c")
    a, b, c = (torch.load(tmp_path / d / CHECKPOINT_FILE, weights_only=True) for d in "abc")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert first.val_accuracy == second.val_accuracy and first.paths == second.paths == 3
    assert other.paths == 3
    described = json.loads((tmp_path / "a" / DESCRIPTION_FILE).read_text())
    assert described["searchSpace"] == CELL_SPACE and described["seed"] == 7


def test_the_evaluator_scores_candidates_independently_of_their_order(tmp_path: Path) -> None:
    train_supernet(CELL_SPACE, TINY, 0, tmp_path)
    evaluator = Evaluator(tmp_path, recalibration_batches=2)
    conv_first = evaluator.evaluate(CONV_CELL)
    evaluator.evaluate(SKIP_CELL)
    conv_again = evaluator.evaluate(CONV_CELL)
    for key in ("val_accuracy", "val_loss", "params", "flops"):
        assert conv_first[key] == conv_again[key]
    fresh = Evaluator(tmp_path, recalibration_batches=2).evaluate(CONV_CELL)
    assert fresh["val_loss"] == conv_first["val_loss"]
    assert conv_first["params"] > evaluator.evaluate(SKIP_CELL)["params"]


def test_a_fine_tuned_score_moves_the_weights_then_restores_them(tmp_path: Path) -> None:
    train_supernet(CELL_SPACE, TINY, 0, tmp_path)
    plain = Evaluator(tmp_path, recalibration_batches=2).evaluate(CONV_CELL)
    tuned = Evaluator(tmp_path, recalibration_batches=2, finetune_steps=5, finetune_lr=0.05)
    before = {k: v.clone() for k, v in tuned.supernet.state_dict().items()}
    first = tuned.evaluate(CONV_CELL)
    assert first["val_loss"] != plain["val_loss"]  # five SGD steps changed what was validated
    assert all(torch.equal(before[k], v) for k, v in tuned.supernet.state_dict().items())
    tuned.evaluate(SKIP_CELL)
    assert tuned.evaluate(CONV_CELL)["val_loss"] == first["val_loss"]  # the score depends on the candidate only
    assert len(tuned.finetune_batches) == 5  # more steps than one epoch's 3 batches: the epochs repeat
    replies = io.StringIO()
    tuned.serve(io.StringIO(json.dumps({"index": 0, "architecture": CONV_CELL}) + "\n"), replies)
    assert "fine-tuned for 5 steps" in json.loads(replies.getvalue())["result"]["message"]


def test_the_evaluator_answers_one_line_per_request(tmp_path: Path) -> None:
    train_supernet(CELL_SPACE, TINY, 0, tmp_path)
    evaluator = Evaluator(tmp_path, recalibration_batches=1)
    requests = io.StringIO(
        "\n".join(
            json.dumps(r)
            for r in (
                {"index": 0, "architecture": CONV_CELL},
                {"index": 1, "architecture": {"edge_1_0": "none", "edge_2_0": "none", "edge_2_1": "none"}},
                {"index": 2},
            )
        )
        + "\n"
    )
    replies = io.StringIO()
    assert evaluator.serve(requests, replies) == 3
    answers = [json.loads(line) for line in replies.getvalue().splitlines()]
    assert [a["index"] for a in answers] == [0, 1, 2]
    assert answers[0]["exitCode"] == 0 and 0 <= answers[0]["result"]["val_accuracy"] <= 1
    assert answers[1]["exitCode"] == 3 and answers[1]["result"]["status"] == "bad_candidate"
    assert answers[2]["exitCode"] == 3


def test_the_train_command_follows_the_trial_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_signal_handlers: None
) -> None:
    settings = TINY.model_dump(exclude_defaults=True)
    monkeypatch.setenv("KUBENAS_SEARCH_SPACE", json.dumps(CHAIN_SPACE))
    monkeypatch.setenv("KUBENAS_SETTINGS", json.dumps(settings))
    monkeypatch.setenv("KUBENAS_SEED", "3")
    monkeypatch.setenv("KUBENAS_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("KUBENAS_RESULT_FILE", str(tmp_path / "result.json"))
    assert main(["train"]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "completed" and result["paths"] == 3
    assert (tmp_path / "out" / CHECKPOINT_FILE).is_file()
    monkeypatch.setenv("KUBENAS_SEARCH_SPACE", json.dumps({"hyperparameters": [{"name": "lr"}]}))
    assert main(["train"]) == 3
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "bad_candidate"

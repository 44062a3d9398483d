"""The contract's environment, the architecture's families and the settings with their overrides."""

from __future__ import annotations

import pytest

from kubenas_trainer.candidate import parse_candidate
from kubenas_trainer.contract import TrialContext
from kubenas_trainer.errors import BadCandidate, ContractError, SettingsError
from kubenas_trainer.settings import Settings, resolve_settings

from .conftest import RESNET_LIKE


def test_context_reads_every_variable(tmp_path) -> None:
    env = {
        "KUBENAS_ARCHITECTURE": '{"edge_1_0": "skip_connect"}',
        "KUBENAS_ARCHITECTURE_ID": "edge_1_0=skip_connect",
        "KUBENAS_SEARCH_SPACE": '{"cell": {"nodes": 2}}',
        "KUBENAS_SETTINGS": '{"epochs": 1}',
        "KUBENAS_TRIAL": "e-00001",
        "KUBENAS_EXPERIMENT": "e",
        "KUBENAS_SEED": "7",
        "KUBENAS_RESULT_FILE": str(tmp_path / "r.json"),
        "KUBENAS_OUTPUT_DIR": str(tmp_path / "o"),
    }
    ctx = TrialContext.from_env(env)
    assert ctx.architecture == {"edge_1_0": "skip_connect"}
    assert ctx.search_space == {"cell": {"nodes": 2}}
    assert (ctx.settings, ctx.seed, ctx.trial, ctx.experiment) == ({"epochs": 1}, 7, "e-00001", "e")
    assert ctx.result_file == tmp_path / "r.json" and ctx.output_dir == tmp_path / "o"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({}, "KUBENAS_ARCHITECTURE"),
        ({"KUBENAS_ARCHITECTURE": "{oops"}, "KUBENAS_ARCHITECTURE"),
        ({"KUBENAS_ARCHITECTURE": "[1]"}, "KUBENAS_ARCHITECTURE"),
        ({"KUBENAS_ARCHITECTURE": "{}", "KUBENAS_SEED": "x"}, "KUBENAS_SEED"),
        ({"KUBENAS_ARCHITECTURE": "{}", "KUBENAS_SEED": "-1"}, "KUBENAS_SEED"),
        ({"KUBENAS_ARCHITECTURE": "{}", "KUBENAS_SEED": str(2**64 - 1)}, "KUBENAS_SEED"),  # overflowed seed + 1
        ({"KUBENAS_ARCHITECTURE": "{}", "KUBENAS_SEED": str(2**63)}, "KUBENAS_SEED"),
        ({"KUBENAS_ARCHITECTURE": "{}", "KUBENAS_SETTINGS": "3"}, "KUBENAS_SETTINGS"),
    ],
)
def test_context_errors_name_the_variable(env: dict[str, str], field: str) -> None:
    with pytest.raises(ContractError) as info:
        TrialContext.from_env(env)
    assert info.value.field == field
    assert info.value.exit_code == 2


def test_the_largest_seed_is_accepted() -> None:
    assert TrialContext.from_env({"KUBENAS_ARCHITECTURE": "{}", "KUBENAS_SEED": str(2**63 - 1)}).seed == 2**63 - 1


def test_cell_shape_comes_from_the_space_or_the_names() -> None:
    assert parse_candidate(RESNET_LIKE).nodes == 4
    assert parse_candidate(RESNET_LIKE, {"cell": {"nodes": 4, "operations": []}}).nodes == 4
    with pytest.raises(BadCandidate) as info:
        parse_candidate(RESNET_LIKE, {"cell": {"nodes": 5}})
    assert info.value.field == "architecture.edge_4_0"
    partial = {k: v for k, v in RESNET_LIKE.items() if k != "edge_2_1"}
    with pytest.raises(BadCandidate, match="is missing"):
        parse_candidate(partial)
    with pytest.raises(BadCandidate, match="lower node"):
        parse_candidate({"edge_1_1": "skip_connect"})


def test_layers_are_ordered_and_complete() -> None:
    assert parse_candidate({"layer_1": "identity", "layer_0": "conv3x3"}).layers == ("nor_conv_3x3", "skip_connect")
    with pytest.raises(BadCandidate) as info:
        parse_candidate({"layer_0": "conv3x3", "layer_2": "conv3x3"})
    assert info.value.field == "architecture.layer_1"
    with pytest.raises(BadCandidate) as info:
        parse_candidate({"layer_0": "conv3x3", "layer_1": "conv3x3"}, {"layers": {"layers": 1}})
    assert info.value.field == "architecture.layer_1"


def test_hyperparameters_override_settings_of_the_same_name() -> None:
    arch = {**RESNET_LIKE, "lr": 0.05, "width": 32, "optimizer_flavour": "x"}
    settings, ignored = resolve_settings({"lr": 0.2, "epochs": 3}, arch)
    assert (settings.lr, settings.width, settings.epochs) == (0.05, 32, 3)
    assert ignored == ["optimizer_flavour"]


def test_settings_accept_camel_case_keys() -> None:
    settings, _ = resolve_settings({"timeBudgetS": 30, "cellsPerStage": 1, "batch_size": 8}, {})
    assert (settings.time_budget_s, settings.cells_per_stage, settings.batch_size) == (30, 1, 8)
    with pytest.raises(SettingsError, match=r"repeats settings\.batchSize$") as info:
        resolve_settings({"batchSize": 8, "batch_size": 8}, {})
    with pytest.raises(SettingsError) as info:
        resolve_settings({"valFraction": 2}, {})
    assert info.value.field == "settings.valFraction"


def test_setting_errors_name_the_key_and_its_source() -> None:
    with pytest.raises(SettingsError) as info:
        resolve_settings({"epoch": 3}, {})
    assert info.value.field == "settings.epoch"
    with pytest.raises(SettingsError) as info:
        resolve_settings({"lr": 0.1}, {"lr": -1.0})
    assert info.value.field == "architecture.lr"
    with pytest.raises(SettingsError) as info:
        resolve_settings({"device": "tpu"}, {})
    assert info.value.field == "settings.device"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused_as_such(value: float) -> None:
    with pytest.raises(SettingsError) as info:
        resolve_settings({"lr": value}, {})
    assert info.value.field == "settings.lr" and info.value.message.startswith("must be a finite number")
    with pytest.raises(SettingsError) as info:
        resolve_settings({"timeBudgetS": value}, {})
    assert info.value.field == "settings.timeBudgetS"


def test_warmup_epochs_are_bounded() -> None:
    with pytest.raises(SettingsError) as info:  # it overflowed round(warmup * steps) in the LR schedule
        resolve_settings({"warmupEpochs": 1.0e308}, {})
    assert info.value.field == "settings.warmupEpochs" and "100000" in info.value.message
    assert resolve_settings({"warmupEpochs": 100_000}, {})[0].warmup_epochs == 100_000


def test_errors_after_validation_name_the_setting_as_written() -> None:
    camel, _ = resolve_settings({"valFraction": 0.5}, {})
    snake, _ = resolve_settings({"val_fraction": 0.5}, {"batch_size": 4})
    assert (camel.spelled("val_fraction"), snake.spelled("val_fraction")) == (
        "settings.valFraction",
        "settings.val_fraction",
    )
    assert snake.spelled("batch_size") == "architecture.batch_size"  # a decision overrode it
    assert Settings().spelled("time_budget_s") == "settings.timeBudgetS"  # not given: a manifest's spelling


def test_defaults_are_sound() -> None:
    s = Settings()
    assert s.nesterov and s.momentum == 0.9 and s.label_smoothing > 0 and s.weight_decay > 0
    assert s.schedule == "cosine" and s.dataset == "digits"

"""Augmentation policies in the trainer: parsing, the operations, determinism, fixed policies, the export."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from kubenas.api.space import SearchSpaceSpec
from kubenas.core.augment import policy_of
from kubenas.core.space import build_space
from kubenas_trainer import main as trainer_main
from kubenas_trainer.autoaugment import PolicyAugment, RandAugment, TrivialAugmentWide, apply_call, choose_augment
from kubenas_trainer.data import load_dataset
from kubenas_trainer.errors import BadCandidate, SettingsError
from kubenas_trainer.policy import (
    OPERATIONS,
    POLICY_FILE,
    SNIPPET,
    SNIPPET_FILE,
    WIDE,
    Policy,
    Step,
    parse_policy,
    resolve,
)
from kubenas_trainer.settings import Settings, resolve_settings

from .conftest import contract_env

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")


def _images(n: int = 16, side: int = 8, seed: int = 0, channels: int = 1) -> torch.Tensor:
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(seed))


def _one(operation: str, probability: float = 1.0, magnitude: float = 1.0) -> Policy:
    return Policy(((Step(operation, probability, magnitude),),))


def test_the_trainer_reads_the_policy_the_core_expanded() -> None:
    spec = SearchSpaceSpec.model_validate({"augmentation": {"subPolicies": 3, "probabilityBins": 6}})
    space = build_space(spec)
    arch = space.sample(np.random.default_rng(4))
    policy = parse_policy(arch, spec.to_wire())
    expected = policy_of(arch, space.families["augmentation"])
    assert policy is not None
    got = [[(s.operation, s.probability, s.magnitude) for s in sub] for sub in policy.sub_policies]
    assert got == [[(s["operation"], s["probability"], s["magnitude"]) for s in sub] for sub in expected]
    assert parse_policy({"lr": 0.1}) is None


@pytest.mark.parametrize(
    ("architecture", "field"),
    [
        ({"aug_0_0_op": "warp", "aug_0_0_prob": 1, "aug_0_0_mag": 1}, "architecture.aug_0_0_op"),
        ({"aug_0_0_op": "rotate", "aug_0_0_prob": 11, "aug_0_0_mag": 1}, "architecture.aug_0_0_prob"),
        ({"aug_0_0_op": "rotate", "aug_0_0_prob": 1}, "architecture.aug_0_0_mag"),
        (
            {"aug_0_0_op": "rotate", "aug_0_0_prob": 1, "aug_0_0_mag": 1, "aug_1_0_op": "rotate"},
            "architecture.aug_1_0_prob",
        ),
    ],
)
def test_a_malformed_policy_is_a_bad_candidate(architecture: dict, field: str) -> None:
    with pytest.raises(BadCandidate) as info:
        parse_policy(architecture)
    assert info.value.field == field


def test_translation_is_scaled_to_the_image_and_never_leaves_the_canvas() -> None:
    for side in (8, 32):
        call = resolve("translate_x", 1.0, 1, side, side)
        shift = call.arguments()["translate"][0]
        assert 0 < shift < side / 2
        wide = resolve("translate_y", 1.0, -1, side, side, WIDE).arguments()["translate"][1]
        assert -side / 2 <= wide < 0
    assert resolve("translate_x", 1.0, 1, 8, 8).arguments()["translate"] == [2, 0]
    assert resolve("translate_x", 1.0, 1, 32, 32).arguments()["translate"] == [10, 0]
    # a translated digit keeps most of its ink on an 8x8 canvas
    x = torch.zeros(1, 1, 8, 8)
    x[..., 2:6, 2:6] = 1.0
    moved = apply_call(x, resolve("translate_x", 1.0, 1, 8, 8), torch.Generator())
    assert moved.sum() == x.sum()


def test_rotations_and_shears_resample_smoothly() -> None:
    """A round blob rotated by 7 degrees stays the blob: nearest-pixel resampling would leave jags.

    With torchvision's default (nearest) the largest pixel error here is 0.077; bilinear keeps it under 0.01.
    """
    grid = torch.arange(32) + 0.5 - 16
    blob = torch.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * 5.0**2))[None, None]
    moved = apply_call(blob, resolve("rotate", 7 / 30, 1, 32, 32), torch.Generator())
    assert float((moved - blob).abs().max()) < 0.01
    for operation in ("shear_x", "shear_y", "translate_x", "translate_y"):
        assert resolve(operation, 0.5, 1, 32, 32).arguments()["interpolation"] == "bilinear"


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("sign", [1, -1])
def test_every_operation_keeps_shape_and_range(operation: str, sign: int) -> None:
    x = _images(side=32, channels=3)  # colour: saturation leaves grey images alone
    call = resolve(operation, 1.0, sign, 32, 32)
    if operation == "identity":
        assert call is None
        return
    out = apply_call(x, call, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, x), f"{operation} at full magnitude changed nothing"
    assert resolve(operation, 0.0, sign, 32, 32) is None or operation in ("auto_contrast", "equalize", "invert")


def test_a_policy_step_fires_with_its_probability() -> None:
    x = _images(n=64)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(PolicyAugment(_one("invert", probability=0.0))(x, g), x)
    assert torch.allclose(PolicyAugment(_one("invert", probability=1.0))(x, g), 1.0 - x)
    half = PolicyAugment(_one("invert", probability=0.5))(_images(n=2000), g)
    changed = (half != _images(n=2000)).flatten(1).any(1).float().mean()
    assert 0.45 < float(changed) < 0.55


def test_each_image_draws_its_own_sub_policy() -> None:
    policy = Policy(((Step("invert", 1.0, 0.0),), (Step("identity", 1.0, 0.0),)))
    x = _images(n=400)
    out = PolicyAugment(policy)(x, torch.Generator().manual_seed(1))
    inverted = torch.isclose(out, 1.0 - x).flatten(1).all(1).float().mean()
    assert 0.4 < float(inverted) < 0.6


@pytest.mark.parametrize(
    "augment",
    [
        PolicyAugment(Policy(tuple((Step(op, 0.7, 0.6), Step("rotate", 0.5, 0.9)) for op in OPERATIONS))),
        RandAugment(2, 9),
        TrivialAugmentWide(),
    ],
    ids=["searched", "randaugment", "trivialaugment"],
)
def test_augmentation_is_deterministic_under_the_seed(augment) -> None:
    x = _images(n=64, side=16)
    a = augment(x, torch.Generator().manual_seed(5))
    b = augment(x, torch.Generator().manual_seed(5))
    c = augment(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_a_searched_policy_and_a_named_one_are_not_mixed() -> None:
    policy = _one("rotate")
    with pytest.raises(SettingsError) as info:
        choose_augment(Settings(augment_policy="randaugment"), policy, "digits", True)
    assert info.value.field == "settings.augmentPolicy"  # a manifest's spelling, not Python's
    written, _ = resolve_settings({"augment_policy": "randaugment"}, {})
    with pytest.raises(SettingsError) as info:
        choose_augment(written, policy, "digits", True)
    assert info.value.field == "settings.augment_policy"  # as the user wrote it
    with pytest.raises(SettingsError):
        choose_augment(Settings(augment_policy="trivialaugment"), None, "iris", False)
    assert choose_augment(Settings(), None, "iris", False) is None
    assert isinstance(choose_augment(Settings(), policy, "digits", True), PolicyAugment)
    assert choose_augment(Settings(augment_policy="randaugment", randaugment_n=3), None, "digits", True).n == 3


def test_digits_resize_and_round_trip_through_the_unit_range() -> None:
    data = load_dataset(Settings(dataset="digits", image_size=32))
    assert data.sample_shape == (1, 32, 32) and data.unit_range
    unit = data.to_unit(data.x_train[:8])
    assert float(unit.min()) >= 0.0 and float(unit.max()) <= 1.0
    assert torch.allclose(data.from_unit(unit), data.x_train[:8], atol=1e-5)


def test_the_generated_shapes_are_images_in_the_unit_range() -> None:
    data = load_dataset(Settings(dataset="shapes", synthetic_samples=120, image_size=16))
    assert data.sample_shape == (1, 16, 16) and data.num_classes == 6 and data.unit_range
    unit = data.to_unit(data.x_train)
    assert float(unit.min()) >= 0.0 and float(unit.max()) <= 1.0
    assert sorted(set(data.y_train.tolist())) == list(range(6))


def test_the_exported_snippet_applies_the_policy_as_training_does(tmp_path: Path) -> None:
    policy = Policy(((Step("equalize", 1.0, 0.0), Step("solarize", 1.0, 0.5)),))
    exported = policy.to_json(8, 8)
    namespace: dict = {}
    exec(compile(SNIPPET, SNIPPET_FILE, "exec"), namespace)
    image = _images(n=1)
    by_snippet = namespace["apply_policy"](image[0], json.loads(json.dumps(exported)), random.Random(0))
    by_trainer = PolicyAugment(policy)(image, torch.Generator().manual_seed(0))[0]
    assert torch.allclose(by_snippet, by_trainer)
    assert exported["subPolicies"][0][1]["calls"] == [{"function": "solarize", "kwargs": {"threshold": 0.5}}]


def test_a_trial_with_a_searched_policy_trains_and_exports_it(tmp_path: Path, monkeypatch) -> None:
    space = {"augmentation": {"subPolicies": 1, "probabilityBins": 11, "magnitudeBins": 10}}
    arch = {"aug_0_0_op": "rotate", "aug_0_0_prob": 8, "aug_0_0_mag": 9}
    arch |= {"aug_0_1_op": "cutout", "aug_0_1_prob": 5, "aug_0_1_mag": 4}
    env = contract_env(tmp_path, architecture=arch, settings={"epochs": 1, "dataset": "digits"}, output=True)
    env["KUBENAS_SEARCH_SPACE"] = json.dumps(space)
    for key in [k for k in os.environ if k.startswith("KUBENAS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert trainer_main.main([]) == 0
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "completed"
    exported = json.loads((tmp_path / "out" / POLICY_FILE).read_text())
    assert exported["imageSize"] == [8, 8]
    assert [s["operation"] for s in exported["subPolicies"][0]] == ["rotate", "cutout"]
    assert exported["subPolicies"][0][0]["probability"] == 0.8
    assert (tmp_path / "out" / SNIPPET_FILE).read_text() == SNIPPET


def test_the_autoaugment_example_gives_this_trainer_policies_it_can_apply() -> None:
    import yaml

    from kubenas.api.v1alpha1 import SearchExperiment

    example = Path(__file__).resolve().parents[2] / "examples" / "digits-autoaugment.yaml"
    exp = SearchExperiment.model_validate(yaml.safe_load(example.read_text()))
    space = build_space(exp.spec.search_space)
    wire = exp.spec.search_space.to_wire()
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = space.sample(rng)
        settings, ignored = resolve_settings(exp.spec.trial_template.settings, arch)
        assert not ignored and settings.image_size == 32
        policy = parse_policy(arch, wire)
        assert policy is not None and len(policy.sub_policies) == 5
        assert isinstance(choose_augment(settings, policy, settings.dataset, True), PolicyAugment)

"""Datasets: built-ins, synthetic, CIFAR-10 and ImageFolder from a path, the seeded split, clear errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from kubenas_trainer.augment import random_crop_flip
from kubenas_trainer.data import load_dataset, stratified_split
from kubenas_trainer.errors import DatasetError
from kubenas_trainer.settings import Settings


def _settings(**kw: object) -> Settings:
    return Settings.model_validate(kw)


def test_digits_stays_8x8_and_splits_by_class() -> None:
    data = load_dataset(_settings(dataset="digits", val_fraction=0.2))
    assert data.sample_shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.y_train) + len(data.y_val) == 1797
    assert abs(len(data.y_val) - 0.2 * 1797) < 10
    assert set(data.y_val.tolist()) == set(range(10))
    assert abs(float(data.x_train.mean())) < 1e-4  # normalised with the training split's statistics


def test_split_is_fixed_by_its_seed() -> None:
    y = np.repeat(np.arange(5), 20)
    a, b = stratified_split(y, 0.25, 3), stratified_split(y, 0.25, 3)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(a[1], stratified_split(y, 0.25, 4)[1])
    assert not set(a[0]) & set(a[1]) and len(a[0]) + len(a[1]) == 100


@pytest.mark.parametrize(("name", "features", "classes"), [("iris", 4, 3), ("wine", 13, 3), ("breast_cancer", 30, 2)])
def test_tables_shipped_with_scikit_learn(name: str, features: int, classes: int) -> None:
    data = load_dataset(_settings(dataset=name))
    assert data.sample_shape == (features, 1, 1) and data.num_classes == classes


def test_synthetic_is_the_same_every_time() -> None:
    s = _settings(dataset="synthetic", synthetic_samples=60, synthetic_classes=3, synthetic_channels=2, image_size=5)
    a, b = load_dataset(s), load_dataset(s)
    assert a.sample_shape == (2, 5, 5) and a.num_classes == 3
    assert torch.equal(a.x_train, b.x_train)


def _write_cifar(root: Path, n: int = 10) -> None:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [j % 10 for j in range(n)]}
        (root / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))


def test_cifar10_python_format_from_a_path(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "cifar-10-batches-py")
    data = load_dataset(_settings(dataset=f"cifar10:{tmp_path}", val_fraction=0.2))
    assert data.sample_shape == (3, 32, 32) and data.x_train.dtype == torch.uint8
    assert len(data.y_train) + len(data.y_val) == 50 and data.natural
    batch = data.prepare(data.x_train[:4])
    assert batch.dtype == torch.float32 and batch.shape == (4, 3, 32, 32)


def test_cifar10_errors_name_the_file(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "c")
    os.remove(tmp_path / "c" / "data_batch_3")
    with pytest.raises(DatasetError) as info:
        load_dataset(_settings(dataset=f"cifar10:{tmp_path / 'c'}"))
    assert info.value.field.endswith("data_batch_3") and "missing" in info.value.message
    wrong = {b"data": np.zeros((2, 5), np.uint8), b"labels": [0, 1]}
    (tmp_path / "c" / "data_batch_3").write_bytes(pickle.dumps(wrong))
    with pytest.raises(DatasetError, match="N x 3072"):
        load_dataset(_settings(dataset=f"cifar10:{tmp_path / 'c'}"))


def test_pickles_that_name_code_are_refused(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "c")
    (tmp_path / "c" / "data_batch_1").write_bytes(pickle.dumps({b"data": os.getcwd, b"labels": []}))
    with pytest.raises(DatasetError, match="not allowed"):
        load_dataset(_settings(dataset=f"cifar10:{tmp_path / 'c'}"))


def _write_images(root: Path, classes: dict[str, int]) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_imagefolder_tree_resized_to_image_size(tmp_path: Path) -> None:
    _write_images(tmp_path, {"cat": 5, "dog": 5})
    data = load_dataset(_settings(dataset=f"imagefolder:{tmp_path}", image_size=6, val_fraction=0.2))
    assert data.sample_shape == (3, 6, 6) and data.num_classes == 2 and len(data.y_val) == 2


def test_imagefolder_with_train_and_val_folders_keeps_that_split(tmp_path: Path) -> None:
    _write_images(tmp_path / "train", {"a": 4, "b": 3})
    _write_images(tmp_path / "val", {"a": 1, "b": 2})
    data = load_dataset(_settings(dataset=f"imagefolder:{tmp_path}", image_size=4))
    assert (len(data.y_train), len(data.y_val)) == (7, 3)


def test_imagefolder_errors(tmp_path: Path) -> None:
    _write_images(tmp_path, {"a": 2})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no images") as info:
        load_dataset(_settings(dataset=f"imagefolder:{tmp_path}"))
    assert info.value.field.endswith("empty")
    (tmp_path / "empty" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="not a readable image"):
        load_dataset(_settings(dataset=f"imagefolder:{tmp_path}"))


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("mnist", "unknown dataset"),
        ("cifar10", "needs a path"),
        ("cifar10:/nonexistent/kubenas", "does not exist"),
        ("digits:/tmp", "takes no path"),
    ],
)
def test_dataset_setting_errors(dataset: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(_settings(dataset=dataset))
    assert info.value.field == "settings.dataset"


def test_augmentation_shifts_and_mirrors_within_the_image() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, pad=1, flip=True, generator=g)
    assert out.shape == x.shape
    assert torch.equal(random_crop_flip(x, pad=0, flip=False, generator=g), x)

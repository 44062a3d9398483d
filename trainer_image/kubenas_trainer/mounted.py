"""Datasets read from a mounted path: CIFAR-10 (python format) and an ImageFolder tree.

Nothing is downloaded: a pod mounts the data (a PVC, a hostPath, an image layer) and the settings name
the path. Every way such a folder can be wrong raises a DatasetError naming the path to look at.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kubenas_trainer.errors import DatasetError

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FOLDER = "cifar-10-batches-py"
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"})


@dataclass(frozen=True)
class RawData:
    """Images N x C x H x W (uint8 or float32), integer labels, and a fixed validation part if the source has one."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    natural: bool
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists and numpy arrays only.

    The CIFAR files are pickles, and a mounted volume is not necessarily trusted: a plain
    ``pickle.load`` would run whatever code the file names.
    """

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 carry bytes
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a dataset file")


def _entry(batch: dict[Any, Any], key: str) -> Any:
    for k in (key, key.encode()):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        data = np.asarray(_entry(batch, "data"), dtype=np.uint8)
        labels = np.asarray(_entry(batch, "labels"), dtype=np.int64)
    except FileNotFoundError:
        raise DatasetError(str(path), "is missing (expected the CIFAR-10 python-format batches)") from None
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DatasetError(str(path), f"is not a CIFAR-10 python-format batch ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetError(str(path), f"has data of shape {data.shape} and {len(labels)} labels, not N x 3072 and N")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(str(path), "has labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar10(root: Path) -> RawData:
    """The five training batches of CIFAR-10 under ``root`` or ``root/cifar-10-batches-py``."""
    if not root.is_dir():
        raise DatasetError(str(root), "is not a directory")
    if (root / CIFAR10_FOLDER).is_dir():
        root = root / CIFAR10_FOLDER
    parts = [_cifar_batch(root / name) for name in CIFAR10_TRAIN]
    return RawData(
        x=np.concatenate([p[0] for p in parts]), y=np.concatenate([p[1] for p in parts]), num_classes=10, natural=True
    )


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DatasetError(str(root), "is not a directory")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(str(root), "holds no class folders (expected <root>/<class>/<image>)")
    return classes


def _read_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(str(path), f"is not a readable image ({exc})") from None


def _read_tree(root: Path, classes: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        folder = root / name
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files and folder.is_dir():
            raise DatasetError(str(folder), "holds no images")
        images += [_read_image(p, size) for p in files]
        labels += [label] * len(files)
    if not images:
        raise DatasetError(str(root), "holds no images")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def read_imagefolder(root: Path, size: int) -> RawData:
    """``root/<class>/<image>``, or ``root/train/<class>/...`` plus ``root/val/<class>/...`` as a fixed split.

    Images are converted to RGB and resized to ``size`` x ``size`` once, at load, so the whole set stays
    resident (on the GPU when there is one) and no decoding runs during training.
    """
    train_root, val_root = root / "train", root / "val"
    if train_root.is_dir() and val_root.is_dir():
        classes = [p.name for p in _class_folders(train_root)]
        stray = sorted({p.name for p in _class_folders(val_root)} - set(classes))
        if stray:
            raise DatasetError(str(val_root / stray[0]), "is a class that train/ does not have")
        x, y = _read_tree(train_root, classes, size)
        x_val, y_val = _read_tree(val_root, classes, size)
        return RawData(x=x, y=y, num_classes=len(classes), natural=True, x_val=x_val, y_val=y_val)
    classes = [p.name for p in _class_folders(root)]
    x, y = _read_tree(root, classes, size)
    return RawData(x=x, y=y, num_classes=len(classes), natural=True)

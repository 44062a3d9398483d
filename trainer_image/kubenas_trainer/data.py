"""Datasets as resident tensors, split into train and validation by a fixed seed.

Every dataset the trainer knows fits in memory, so it is loaded once into tensors (moved to the GPU
when there is one) and batches are gathered by index: no DataLoader workers, no per-step host-to-device
copy, which is where small-network training otherwise spends most of its time.

Built-ins ship inside scikit-learn (its ``digits`` 8x8 images, resized when ``image_size`` asks, and
the ``iris``, ``wine`` and ``breast_cancer`` tables, fed as F x 1 x 1 "images"), ``synthetic`` (noisy
class templates) and ``shapes`` (drawn figures at random places, sizes and angles) are generated, and
``cifar10:<path>`` and ``imagefolder:<path>`` read a mounted path (:mod:`kubenas_trainer.mounted`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from kubenas_trainer.errors import DatasetError
from kubenas_trainer.mounted import RawData, read_cifar10, read_imagefolder
from kubenas_trainer.settings import Settings

TABULAR = ("iris", "wine", "breast_cancer")
BUILTINS = ("digits", *TABULAR, "synthetic", "shapes")
MOUNTED = ("cifar10", "imagefolder")
#: datasets whose images are intensities in [0, 1] (or 0..255 as uint8): what augmentation policies need
UNIT_RANGE = ("digits", "shapes", *MOUNTED)
_TENSORS = ("x_train", "y_train", "x_val", "y_val", "mean", "std")


@dataclass(frozen=True)
class Dataset:
    """Train and validation tensors (N x C x H x W) and how to turn a stored batch into network input.

    Float datasets are normalised once at load; uint8 ones (CIFAR, image folders) stay uint8 (4x less
    memory) and are normalised per batch with the training split's per-channel mean and std.
    ``unit_range`` says the raw images are intensities in [0, 1] (0..255 for uint8), so
    :meth:`to_unit` and :meth:`from_unit` can hand augmentation policies images in [0, 1].
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    mean: torch.Tensor
    std: torch.Tensor
    natural: bool
    unit_range: bool = False

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def to(self, device: torch.device) -> Dataset:
        return replace(self, **{name: getattr(self, name).to(device) for name in _TENSORS})

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """Network input for a stored batch (a no-op for float datasets, normalised at load)."""
        if batch.dtype == torch.uint8:
            return (batch.float() - self.mean) / self.std
        return batch

    def to_unit(self, batch: torch.Tensor) -> torch.Tensor:
        """A stored batch as raw intensities in [0, 1] (the form torchvision's colour operations expect)."""
        if batch.dtype == torch.uint8:
            return batch.float() / 255.0
        return (batch * self.std + self.mean).clamp_(0.0, 1.0)

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Network input for a batch of intensities in [0, 1]: the inverse of :meth:`to_unit`, then :meth:`prepare`."""
        scale = 255.0 if self.x_train.dtype == torch.uint8 else 1.0
        return (x * scale - self.mean) / self.std


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices holding ``fraction`` of every class out, the same for the same seed."""
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        n_val = round(len(idx) * fraction)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std in float64, by chunks so a uint8 CIFAR never becomes a float copy at once."""
    c = x.shape[1]
    total, squares, count = np.zeros(c), np.zeros(c), 0
    for start in range(0, len(x), 4096):
        chunk = x[start : start + 4096].astype(np.float64)
        total += chunk.sum(axis=(0, 2, 3))
        squares += (chunk**2).sum(axis=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0.0))
    return mean, np.where(std < 1e-6, 1.0, std)


def _digits(size: int | None = None) -> RawData:
    """scikit-learn's digits, read straight from the CSV it ships: importing sklearn costs a second per trial.

    ``size`` other than 8 resizes them (bilinear, antialiased when shrinking), e.g. to 32x32 so that
    augmentation has pixels to work with.
    """
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is not None and csv.is_file():
        table = np.loadtxt(csv, delimiter=",", dtype=np.float32)
        images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, target = bunch.images, bunch.target
    x = (images.astype(np.float32) / 16.0)[:, None, :, :]
    if size is not None and size != x.shape[-1]:
        resized = torch.nn.functional.interpolate(
            torch.from_numpy(x), size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1]
        )
        x = resized.clamp_(0.0, 1.0).numpy()
    return RawData(x=x, y=target.astype(np.int64), num_classes=10, natural=False)


def _tabular(name: str) -> RawData:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    x = bunch.data.astype(np.float32)[:, :, None, None]
    y = bunch.target.astype(np.int64)
    return RawData(x=x, y=y, num_classes=int(y.max()) + 1, natural=False)


def _synthetic(settings: Settings) -> RawData:
    """Class templates plus noise: learnable in a few steps, for tests and smoke runs. Fixed by ``split_seed``."""
    rng = np.random.default_rng(settings.split_seed + 7919)
    size = settings.image_size or 8
    shape = (settings.synthetic_channels, size, size)
    templates = rng.normal(size=(settings.synthetic_classes, *shape)).astype(np.float32)
    y = np.arange(settings.synthetic_samples, dtype=np.int64) % settings.synthetic_classes
    rng.shuffle(y)
    x = templates[y] + rng.normal(scale=1.5, size=(len(y), *shape)).astype(np.float32)
    return RawData(x=x, y=y, num_classes=settings.synthetic_classes, natural=False)


SHAPES = ("disk", "square", "triangle", "plus", "ring", "bar")


def _shapes(settings: Settings) -> RawData:
    """Filled figures (disk, square, triangle, plus, ring, bar) at random places, sizes, angles and intensities.

    A generated image set in [0, 1] on which position and rotation do not decide the class: the kind of
    data where geometric augmentation can help. Fixed by ``split_seed``; ``synthetic_samples`` images
    of ``image_size`` (default 32) pixels, one channel, classes balanced.
    """
    rng = np.random.default_rng(settings.split_seed + 104729)
    side = settings.image_size or 32
    n = settings.synthetic_samples
    y = np.arange(n, dtype=np.int64) % len(SHAPES)
    rng.shuffle(y)
    grid = (np.arange(side, dtype=np.float32) + 0.5) / side
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    radius = rng.uniform(0.18, 0.32, n).astype(np.float32)
    cy, cx = (rng.uniform(0.5 - 0.45 + radius, 0.5 + 0.45 - radius) for _ in range(2))
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    x = np.empty((n, 1, side, side), dtype=np.float32)
    for i in range(n):
        cos, sin = np.cos(angle[i]), np.sin(angle[i])
        u = ((gx - cx[i]) * cos + (gy - cy[i]) * sin) / radius[i]
        v = (-(gx - cx[i]) * sin + (gy - cy[i]) * cos) / radius[i]
        kind = SHAPES[y[i]]
        if kind == "disk":
            mask = u**2 + v**2 <= 1
        elif kind == "square":
            mask = np.maximum(abs(u), abs(v)) <= 0.8
        elif kind == "triangle":
            mask = (v >= -0.5) & (v <= 1 - 1.7 * abs(u))
        elif kind == "plus":
            mask = (np.minimum(abs(u), abs(v)) <= 0.25) & (np.maximum(abs(u), abs(v)) <= 1)
        elif kind == "ring":
            mask = (u**2 + v**2 <= 1) & (u**2 + v**2 >= 0.45)
        else:
            mask = (abs(u) <= 1) & (abs(v) <= 0.3)
        x[i, 0] = mask * rng.uniform(0.5, 1.0)
    x = np.clip(x + rng.normal(scale=0.08, size=x.shape).astype(np.float32), 0.0, 1.0)
    return RawData(x=x, y=y, num_classes=len(SHAPES), natural=False)


def read_raw(settings: Settings) -> RawData:
    """The dataset the ``dataset`` setting names, as numpy arrays."""
    kind, sep, where = settings.dataset.partition(":")
    if kind in MOUNTED:
        if not sep or not where:
            raise DatasetError(settings.spelled("dataset"), f"{kind} needs a path: {kind}:<path>")
        path = Path(where)
        if not path.exists():
            raise DatasetError(settings.spelled("dataset"), f"{path} does not exist (is the volume mounted?)")
        if kind == "cifar10":
            return read_cifar10(path)
        return read_imagefolder(path, settings.image_size or 32)
    if sep:
        raise DatasetError(settings.spelled("dataset"), f"{kind} is built in and takes no path")
    if kind == "digits":
        return _digits(settings.image_size)
    if kind == "shapes":
        return _shapes(settings)
    if kind in TABULAR:
        return _tabular(kind)
    if kind == "synthetic":
        return _synthetic(settings)
    known = ", ".join([*BUILTINS, *(f"{m}:<path>" for m in MOUNTED)])
    raise DatasetError(settings.spelled("dataset"), f"unknown dataset {settings.dataset!r} (known: {known})")


def load_dataset(settings: Settings) -> Dataset:
    """Read, split (by ``split_seed``) and normalise the dataset; the result lives on the CPU."""
    raw = read_raw(settings)
    if raw.x_val is not None and raw.y_val is not None:
        x_tr, y_tr, x_va, y_va = raw.x, raw.y, raw.x_val, raw.y_val
    else:
        train_idx, val_idx = stratified_split(raw.y, settings.val_fraction, settings.split_seed)
        x_tr, y_tr, x_va, y_va = raw.x[train_idx], raw.y[train_idx], raw.x[val_idx], raw.y[val_idx]
    if len(x_va) == 0:
        raise DatasetError(settings.spelled("val_fraction"), f"leaves no validation samples out of {len(raw.y)}")
    if len(x_tr) < 2:
        raise DatasetError(
            settings.spelled("val_fraction"), f"leaves {len(x_tr)} training samples; at least 2 are needed"
        )
    mean, std = _channel_stats(x_tr)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def tensor(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x))
        return t if t.dtype == torch.uint8 else (t.float() - mean_t) / std_t

    return Dataset(
        name=settings.dataset,
        x_train=tensor(x_tr),
        y_train=torch.from_numpy(np.ascontiguousarray(y_tr)),
        x_val=tensor(x_va),
        y_val=torch.from_numpy(np.ascontiguousarray(y_va)),
        num_classes=raw.num_classes,
        mean=mean_t,
        std=std_t,
        natural=raw.natural,
        unit_range=kind_of(settings.dataset) in UNIT_RANGE,
    )


def kind_of(dataset: str) -> str:
    """``cifar10`` for ``cifar10:/data``: the dataset setting without its path."""
    return dataset.partition(":")[0]

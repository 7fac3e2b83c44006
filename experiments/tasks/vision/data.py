"""Image datasets for the vision table, from four kinds of source, behind one small interface.

A *source* (`hub`, `torchvision`, `imagefolder`, `mnist_idx`) yields named raw splits: random access to
``(PIL image, int label)`` plus the label array (for stratified, seeded hold-outs). `build_vision_splits` turns the
task config's split recipe into train / validation / test datasets of ``{"pixel_values", "labels"}`` items:

* a split the dataset ships is used as is (`splits.validation: validation`);
* a split given as ``null`` is held out from train: validation with the run's seed (setup.md §3: "hold out 10% of
  train (seeded) as validation"), test with the task's fixed `data_seed` so every seed is scored on the same images.

Local MNIST (`../shared/data/mnist`, the 10k test images only) is read straight from its idx.gz files.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from experiments import shared_data_dir
from experiments.runner.hub import explain_offline, offline_variables

SOURCES = ("hub", "torchvision", "imagefolder", "mnist_idx")
MNIST_FILES = {
    "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
}


def resolve_data_dir(data_dir: Optional[str], default_subdir: str) -> Path:
    """An explicit `data_dir` (absolute, or relative to the shared data folder), else `<shared>/<default_subdir>`."""
    if data_dir is None:
        return shared_data_dir() / default_subdir
    path = Path(os.path.expanduser(str(data_dir)))
    return path if path.is_absolute() else shared_data_dir() / path


# -- raw splits ---------------------------------------------------------------------------------------------------
@dataclass
class RawSplit:
    """Random access to one split's images and integer labels."""

    load_image: Callable[[int], Image.Image]
    labels: np.ndarray
    classes: Optional[list[str]] = None
    source: Optional[Callable[[int], str]] = None  # where row i comes from (a file, a dataset row), for errors

    def where(self, index: int) -> str:
        return self.source(index) if self.source else f"row {index}"

    def __len__(self) -> int:
        return len(self.labels)


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (gzip or plain): magic 0x00 0x00 <dtype 0x08=uint8> <ndim>, big-endian int32 sizes."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (header {raw[:4].hex()}); expected 0x0000 08 ..")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} values")
    return data.reshape(shape)


def load_mnist_split(data_dir: Path, split: str) -> RawSplit:
    """One MNIST idx.gz pair as grey PIL images (`convert("RGB")` happens in the transform step)."""
    if split not in MNIST_FILES:
        raise ValueError(f"mnist_idx split={split!r} is not known; allowed: {sorted(MNIST_FILES)}")
    image_file, label_file = (Path(data_dir) / name for name in MNIST_FILES[split])
    for file in (image_file, label_file):
        if not file.exists():
            raise FileNotFoundError(
                f"MNIST file {file} not found; set data_dir or $GPART_SHARED_DATA "
                "(the repository expects ../shared/data/mnist beside it)"
            )
    images, labels = read_idx(image_file), read_idx(label_file).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{image_file}: {len(images)} images but {label_file}: {len(labels)} labels")
    return RawSplit(
        lambda i: Image.fromarray(images[i], mode="L"),
        labels,
        [str(d) for d in range(10)],
        lambda i: f"{image_file}: image {i}",
    )


def split_files(data_files: Optional[dict], split: str) -> dict:
    """`load_dataset` keyword arguments that fetch only `split`'s files. Without them `datasets` downloads and
    prepares every split of the repository (tanganke/stanford_cars: nine, seven of them unused corrupted copies)."""
    if not data_files:
        return {}
    if split not in data_files:
        raise ValueError(
            f"data_files={dict(data_files)!r} names no file pattern for split {split!r}; "
            f"add one (e.g. {split}: data/{split}-*)"
        )
    return {"data_files": {split: data_files[split]}}


def load_hub_split(
    path: str,
    split: str,
    image_column: str,
    label_column: str,
    name: Optional[str] = None,
    data_dir: Optional[str] = None,
    data_files: Optional[dict] = None,
) -> RawSplit:
    """A split of a Hugging Face dataset: a hub id (`timm/oxford-iiit-pet`), a local data folder or script, or a
    folder written by `DatasetDict.save_to_disk`. `data_files` (split -> file pattern in the repository) limits
    the download to the split asked for."""
    import datasets

    if Path(path).is_dir() and (Path(path) / "dataset_dict.json").exists():
        dataset = datasets.load_from_disk(path)[split]
    else:
        with explain_offline(path):
            dataset = datasets.load_dataset(
                path, name, split=split, data_dir=data_dir, **split_files(data_files, split)
            )
    missing = [c for c in (image_column, label_column) if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"dataset {path!r} split {split!r} has no column(s) {missing}; its columns are "
            f"{dataset.column_names} (set image_column / label_column in the task config)"
        )
    feature = dataset.features[label_column]
    classes = list(feature.names) if hasattr(feature, "names") else None
    labels = np.asarray(dataset[label_column], dtype=np.int64)
    return RawSplit(
        lambda i: dataset[int(i)][image_column],
        labels,
        classes,
        lambda i: f"dataset {path!r} split {split!r} row {i} (column {image_column!r})",
    )


def _torchvision_labels(dataset) -> np.ndarray:
    for attribute in ("targets", "_labels", "labels"):
        if hasattr(dataset, attribute):
            return np.asarray(getattr(dataset, attribute), dtype=np.int64)
    # Fall back to reading every item (slow, but correct) for datasets that keep labels elsewhere.
    return np.asarray([dataset[i][1] for i in range(len(dataset))], dtype=np.int64)


def load_torchvision_split(
    dataset_class: str, root: Path, split: str, split_argument: str = "split", download: bool = False, **kwargs: Any
) -> RawSplit:
    """A `torchvision.datasets.<dataset_class>` split, e.g. FGVCAircraft(split="val", annotation_level="variant").
    `download` fetches the archive when it is missing, except in offline mode (tests, CI): that never goes online."""
    import torchvision

    cls = getattr(torchvision.datasets, dataset_class, None)
    if cls is None:
        raise ValueError(f"torchvision.datasets has no dataset_class={dataset_class!r}")
    split_kwargs = {split_argument: split} if split_argument == "split" else {split_argument: split == "train"}
    offline = offline_variables()
    try:
        dataset = cls(root=str(root), download=download and not offline, **split_kwargs, **kwargs)
    except RuntimeError as error:  # torchvision's "Dataset not found. You can use download=True ..."
        why = (
            f"offline mode is on ({', '.join(f'{name}=1' for name in offline)}), so it was not downloaded; run "
            f"with {' '.join(f'{name}=0' for name in offline)}"
            if download and offline
            else "set download: true in the task config"
        )
        raise FileNotFoundError(
            f"{dataset_class} files not found under {root} ({error}); {why}, or put the "
            f"extracted official archive there (data_dir)."
        ) from error
    return RawSplit(
        lambda i: dataset[int(i)][0],
        _torchvision_labels(dataset),
        list(getattr(dataset, "classes", [])) or None,
        lambda i: f"torchvision {dataset_class} under {root} split {split!r} item {i}",
    )


def load_imagefolder_split(root: Path, split: str) -> RawSplit:
    """`<root>/<split>/<class name>/<image>` read with torchvision's ImageFolder (class ids = sorted folder names)."""
    from torchvision.datasets import ImageFolder

    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} not found; expected <data_dir>/<split>/<class>/<image>")
    dataset = ImageFolder(str(folder))
    return RawSplit(
        lambda i: dataset[int(i)][0],
        np.asarray(dataset.targets, dtype=np.int64),
        list(dataset.classes),
        lambda i: dataset.samples[int(i)][0],
    )


# -- split recipe -------------------------------------------------------------------------------------------------
def seeded_holdout(labels: np.ndarray, fraction: float, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out) for a stratified, seeded hold-out of `fraction` of the rows."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{what}={fraction!r}: a hold-out fraction must lie strictly between 0 and 1")
    indices = np.arange(len(labels))
    try:
        kept, held_out = train_test_split(indices, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError:  # a class too rare to stratify (tiny smoke subsets): plain seeded split
        kept, held_out = train_test_split(indices, test_size=fraction, random_state=seed)
    return np.sort(kept), np.sort(held_out)


def seeded_subset(indices: np.ndarray, labels: np.ndarray, limit: Optional[int], seed: int) -> np.ndarray:
    """At most `limit` of `indices` (stratified, seeded); all of them when `limit` is None or large enough."""
    if limit is None or limit >= len(indices):
        return indices
    if limit <= 0:
        raise ValueError(f"a sample limit must be positive, got {limit}")
    try:
        subset, _ = train_test_split(indices, train_size=limit, random_state=seed, stratify=labels[indices])
    except ValueError:  # too few rows per class to stratify
        subset, _ = train_test_split(indices, train_size=limit, random_state=seed)
    return np.sort(subset)


class TransformedImages(Dataset):
    """`{"pixel_values": transform(RGB image), "labels": int}` for the given rows of a raw split. Grey or RGBA
    images become 3-channel RGB, as the ViT patch embedding expects."""

    def __init__(self, raw: RawSplit, indices: Sequence[int], transform: Callable):
        self.raw, self.indices, self.transform = raw, np.asarray(indices, dtype=np.int64), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict:
        index = int(self.indices[item])
        try:
            image = self.raw.load_image(index)
            if not isinstance(image, Image.Image):
                image = Image.fromarray(np.asarray(image))
            image = image.convert("RGB")
        except (
            OSError,
            ValueError,
            TypeError,
            SyntaxError,
        ) as error:  # PIL's decode errors (UnidentifiedImageError is an OSError)
            raise ImageDecodeError(
                f"{self.raw.where(index)}: the image could not be decoded ({type(error).__name__}: "
                f"{error}); expected an image file PIL can read (JPEG, PNG, ...)"
            ) from error
        return {"pixel_values": self.transform(image), "labels": int(self.raw.labels[index])}


class ImageDecodeError(ValueError):
    """An image of the dataset cannot be decoded; the message names its file (or dataset row)."""


def load_raw_split(
    source: str,
    split: str,
    *,
    path: Optional[str] = None,
    name: Optional[str] = None,
    data_dir: Optional[str] = None,
    data_files: Optional[dict] = None,
    image_column: str = "image",
    label_column: str = "label",
    dataset_class: Optional[str] = None,
    split_argument: str = "split",
    download: bool = False,
    dataset_kwargs: Optional[dict] = None,
) -> RawSplit:
    """Dispatch on `source` (one of `SOURCES`); the keyword arguments are the task config's data keys."""
    if source == "hub":
        if not path:
            raise ValueError("source='hub' needs `path` (a hub id such as 'timm/resisc45' or a local folder)")
        return load_hub_split(
            path, split, image_column, label_column, name=name, data_dir=data_dir, data_files=data_files
        )
    if source == "torchvision":
        if not dataset_class:
            raise ValueError("source='torchvision' needs `dataset_class` (e.g. 'FGVCAircraft')")
        root = resolve_data_dir(data_dir, dataset_class.lower())
        return load_torchvision_split(dataset_class, root, split, split_argument, download, **(dataset_kwargs or {}))
    if source == "imagefolder":
        if not data_dir:
            raise ValueError("source='imagefolder' needs `data_dir` holding <split>/<class>/<image> folders")
        return load_imagefolder_split(resolve_data_dir(data_dir, ""), split)
    if source == "mnist_idx":
        return load_mnist_split(resolve_data_dir(data_dir, "mnist"), split)
    raise ValueError(f"source={source!r} is not known; allowed: {list(SOURCES)}")


def plan_splits(
    load: Callable[[str], RawSplit],
    splits: dict,
    *,
    seed: int,
    data_seed: int = 0,
    validation_fraction: Optional[float] = None,
    test_fraction: Optional[float] = None,
    subsets: Optional[dict] = None,
) -> dict[str, tuple[RawSplit, np.ndarray]]:
    """Rows of each of train / validation / test as ``(raw split, indices)``.

    `splits` maps `train`/`validation`/`test` to the dataset's own split names; ``null`` means "hold out of train":
    test first, with the fixed `data_seed` (same test images for every run seed), then validation with `seed`.
    `subsets` (role -> row limit or None, for smoke runs) takes seeded, stratified subsets after the hold-outs.
    """
    unknown = set(splits) - {"train", "validation", "test"}
    if unknown or not splits.get("train"):
        raise ValueError(f"splits={dict(splits)!r}: needs a `train` split name and only the keys train/validation/test")
    train = load(splits["train"])
    train_rows = np.arange(len(train))
    planned: dict[str, tuple[RawSplit, np.ndarray]] = {}
    for role, fraction, holdout_seed in (("test", test_fraction, data_seed), ("validation", validation_fraction, seed)):
        if splits.get(role):
            raw = load(splits[role])
            planned[role] = (raw, np.arange(len(raw)))
        elif fraction is None:
            raise ValueError(f"splits.{role} is null, so {role}_fraction must say how much of train to hold out")
        else:
            kept, held = seeded_holdout(train.labels[train_rows], fraction, holdout_seed, f"{role}_fraction")
            planned[role] = (train, train_rows[held])
            train_rows = train_rows[kept]
    planned["train"] = (train, train_rows)
    limits = subsets or {}
    return {
        role: (raw, seeded_subset(rows, raw.labels, limits.get(role), data_seed if role == "test" else seed))
        for role, (raw, rows) in ((r, planned[r]) for r in ("train", "validation", "test"))
    }

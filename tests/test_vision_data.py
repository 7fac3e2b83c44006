"""Vision data: MNIST idx parsing, seeded split recipes, the four sources, timm transforms, RGB conversion."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from experiments import shared_data_dir
from experiments.tasks.vision.data import (
    RawSplit,
    TransformedImages,
    load_mnist_split,
    load_raw_split,
    plan_splits,
    read_idx,
    seeded_subset,
)
from experiments.tasks.vision.transforms import build_transforms, processor_normalisation

MNIST_DIR = Path(os.environ.get("GPART_MNIST_DIR") or shared_data_dir() / "mnist")
needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(), reason=f"MNIST idx files not found in {MNIST_DIR}"
)
MNIST_RECIPE = {"train": "t10k", "validation": None, "test": None}


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_split(MNIST_DIR, "t10k")


def fake_split(labels) -> RawSplit:
    labels = np.asarray(labels, dtype=np.int64)
    return RawSplit(lambda i: Image.new("L", (8, 8), color=int(labels[i]) * 20), labels)


@needs_mnist
def test_mnist_idx_parses_to_the_published_counts(mnist):
    # SOURCES.md: 10000 images, label counts 980/1135/1032/1010/982/892/958/1028/974/1009.
    assert len(mnist) == 10_000
    assert np.bincount(mnist.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    image = mnist.load_image(0)
    assert image.size == (28, 28) and image.mode == "L"
    assert 0 < np.asarray(image).mean() < 255


def test_read_idx_rejects_a_file_that_is_not_idx(tmp_path):
    bad = tmp_path / "bad-idx.gz"
    with gzip.open(bad, "wb") as handle:
        handle.write(b"\x12\x34\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        read_idx(bad)
    short = tmp_path / "short-idx"
    short.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="shape"):
        read_idx(short)


@needs_mnist
def test_mnist_recipe_test_fixed_across_seeds_validation_seeded_and_disjoint(mnist):
    plans = {
        seed: plan_splits(lambda _: mnist, MNIST_RECIPE, seed=seed, validation_fraction=0.1, test_fraction=0.2)
        for seed in (0, 1)
    }
    for plan in plans.values():
        rows = {role: set(plan[role][1].tolist()) for role in ("train", "validation", "test")}
        assert len(rows["test"]) == 2000 and len(rows["validation"]) == 800 and len(rows["train"]) == 7200
        assert not (rows["train"] & rows["validation"]) and not (rows["train"] & rows["test"])
        assert not (rows["validation"] & rows["test"])
        assert rows["train"] | rows["validation"] | rows["test"] == set(range(10_000))
    assert np.array_equal(plans[0]["test"][1], plans[1]["test"][1])  # same test images for every seed
    assert not np.array_equal(plans[0]["validation"][1], plans[1]["validation"][1])
    again = plan_splits(lambda _: mnist, MNIST_RECIPE, seed=1, validation_fraction=0.1, test_fraction=0.2)
    assert np.array_equal(again["validation"][1], plans[1]["validation"][1])  # deterministic under a seed
    # stratified hold-out: every digit keeps (about) its share of the test split
    shares = np.bincount(mnist.labels[plans[0]["test"][1]], minlength=10) / 2000
    assert np.allclose(shares, np.bincount(mnist.labels) / 10_000, atol=0.002)


def test_official_splits_are_used_as_given_and_null_needs_a_fraction():
    splits = {"train": fake_split([0, 1] * 50), "val": fake_split([0, 1] * 5), "test": fake_split([1, 0] * 7)}
    plan = plan_splits(splits.__getitem__, {"train": "train", "validation": "val", "test": "test"}, seed=3)
    assert [len(plan[r][1]) for r in ("train", "validation", "test")] == [100, 10, 14]
    assert plan["validation"][0] is splits["val"] and plan["test"][0] is splits["test"]
    with pytest.raises(ValueError, match="validation_fraction"):
        plan_splits(splits.__getitem__, {"train": "train", "validation": None, "test": "test"}, seed=0)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        plan_splits(
            splits.__getitem__, {"train": "train", "validation": None, "test": "test"}, seed=0, validation_fraction=1.5
        )
    with pytest.raises(ValueError, match="splits="):
        plan_splits(splits.__getitem__, {"train": "train", "dev": "val"}, seed=0)


def test_subsets_are_seeded_stratified_and_inside_the_rows():
    labels = np.repeat(np.arange(4), 50)
    rows = np.arange(0, 200)
    chosen = seeded_subset(rows, labels, 40, seed=5)
    assert len(chosen) == 40 and set(chosen) <= set(rows)
    assert np.bincount(labels[chosen]).tolist() == [10, 10, 10, 10]
    assert np.array_equal(chosen, seeded_subset(rows, labels, 40, seed=5))
    assert not np.array_equal(chosen, seeded_subset(rows, labels, 40, seed=6))
    assert np.array_equal(seeded_subset(rows, labels, None, seed=0), rows)
    with pytest.raises(ValueError, match="positive"):
        seeded_subset(rows, labels, 0, seed=0)


def test_transforms_follow_the_protocol_and_the_checkpoint_normalisation():
    train, evaluation = build_transforms(32, mean=(0.2, 0.4, 0.6), std=(0.5, 0.25, 0.1))
    grey = Image.new("RGB", (48, 40), color=(128, 128, 128))
    out = evaluation(grey)
    assert out.shape == (3, 32, 32)
    expected = (torch.tensor([128 / 255] * 3) - torch.tensor([0.2, 0.4, 0.6])) / torch.tensor([0.5, 0.25, 0.1])
    assert torch.allclose(out.mean(dim=(1, 2)), expected, atol=1e-4)
    # eval = Resize(short side) + CenterCrop: deterministic; train = RandomResizedCrop + flip: random
    ramp = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))).convert("RGB")
    assert torch.equal(evaluation(ramp), evaluation(ramp))
    torch.manual_seed(0)
    crops = [train(ramp) for _ in range(4)]
    assert all(c.shape == (3, 32, 32) for c in crops)
    assert any(not torch.equal(crops[0], c) for c in crops[1:])
    names = [type(t).__name__ for t in train.transforms]
    assert "ColorJitter" not in names and "RandomHorizontalFlip" in names
    with pytest.raises(ValueError, match="three channel"):
        build_transforms(32, mean=(0.5,), std=(0.5,))


def test_processor_normalisation_reads_size_mean_std():
    from transformers import ViTImageProcessor

    processor = ViTImageProcessor(
        size={"height": 64, "width": 64}, image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6], resample=3
    )
    assert processor_normalisation(processor) == {
        "image_size": 64,
        "mean": (0.1, 0.2, 0.3),
        "std": (0.4, 0.5, 0.6),
        "interpolation": "bicubic",
    }


def test_grey_images_become_three_channel_items():
    raw = fake_split([3, 1, 2])
    _, evaluation = build_transforms(16, (0.5,) * 3, (0.5,) * 3)
    dataset = TransformedImages(raw, [2, 0], evaluation)
    item = dataset[0]
    assert len(dataset) == 2 and item["labels"] == 2 and item["pixel_values"].shape == (3, 16, 16)
    assert torch.allclose(item["pixel_values"][0], item["pixel_values"][2])


def test_imagefolder_source(tmp_path):
    for split, count in (("train", 3), ("val", 2)):
        for name, colour in (("banded", 40), ("striped", 200)):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (10, 12), color=(colour, i, 0)).save(folder / f"{i}.png")
    raw = load_raw_split("imagefolder", "val", data_dir=str(tmp_path))
    assert raw.classes == ["banded", "striped"] and raw.labels.tolist() == [0, 0, 1, 1]
    assert raw.load_image(3).getpixel((0, 0))[0] == 200
    with pytest.raises(FileNotFoundError, match="test"):
        load_raw_split("imagefolder", "test", data_dir=str(tmp_path))


def test_hub_source_reads_a_local_saved_dataset_and_names_missing_columns(tmp_path):
    import datasets

    features = datasets.Features({"img": datasets.Image(), "fine_label": datasets.ClassLabel(names=["a", "b", "c"])})
    images = [Image.new("RGB", (6, 6), color=(i * 60, 0, 0)) for i in range(3)]
    data = datasets.Dataset.from_dict({"img": images, "fine_label": [2, 0, 1]}, features=features)
    datasets.DatasetDict({"train": data, "test": data}).save_to_disk(str(tmp_path / "cifar-like"))
    raw = load_raw_split(
        "hub", "test", path=str(tmp_path / "cifar-like"), image_column="img", label_column="fine_label"
    )
    assert raw.labels.tolist() == [2, 0, 1] and raw.classes == ["a", "b", "c"]
    assert raw.load_image(2).getpixel((0, 0))[0] == 120
    with pytest.raises(ValueError, match=r"no column\(s\) \['image'\].*fine_label"):
        load_raw_split(
            "hub", "train", path=str(tmp_path / "cifar-like"), image_column="image", label_column="fine_label"
        )


def test_unknown_source_and_missing_keys_are_errors():
    with pytest.raises(ValueError, match="source='webdataset'"):
        load_raw_split("webdataset", "train")
    with pytest.raises(ValueError, match="needs `path`"):
        load_raw_split("hub", "train")
    with pytest.raises(ValueError, match="dataset_class='NoSuchSet'"):
        load_raw_split("torchvision", "train", dataset_class="NoSuchSet", data_dir="/tmp")
    with pytest.raises(ValueError, match="split='valid'"):
        load_mnist_split(MNIST_DIR, "valid")

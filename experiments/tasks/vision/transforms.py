"""Train / eval image transforms from timm, normalised with the checkpoint's own mean and std.

setup.md §3: training uses RandomResizedCrop(224) + horizontal flip, evaluation Resize(224) + CenterCrop(224).
timm's `create_transform` adds colour jitter (0.4) by default; the paper protocol has none, so it is switched off.
"""

from __future__ import annotations

from typing import Callable, Sequence

from timm.data import create_transform

# PIL resample codes (what transformers' image processors store) -> timm interpolation names.
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


def processor_normalisation(processor) -> dict:
    """Image size, mean, std and interpolation of a transformers image processor (e.g. `ViTImageProcessor`)."""
    size = processor.size
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge")
    elif not isinstance(size, int):  # transformers 5.x may hold a SizeDict
        size = getattr(size, "height", None) or getattr(size, "shortest_edge", None)
    resample = getattr(processor, "resample", 2)
    resample = int(getattr(resample, "value", resample)) if resample is not None else 2
    return {
        "image_size": int(size),
        "mean": tuple(float(m) for m in processor.image_mean),
        "std": tuple(float(s) for s in processor.image_std),
        "interpolation": _RESAMPLE_NAMES.get(resample, "bilinear"),
    }


def build_transforms(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bilinear",
    crop_scale: Sequence[float] = (0.08, 1.0),
) -> tuple[Callable, Callable]:
    """(train, eval) transforms taking an RGB PIL image to a normalised float tensor of shape (3, size, size).
    `crop_scale` is RandomResizedCrop's area range; (0.08, 1) is its default, what RandomResizedCrop(224) means."""
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean={tuple(mean)} / std={tuple(std)}: need three channel values each (RGB)")
    common = dict(input_size=(3, image_size, image_size), mean=tuple(mean), std=tuple(std), interpolation=interpolation)
    if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        raise ValueError(f"crop_scale={tuple(crop_scale)}: need (low, high) with 0 < low <= high <= 1")
    train = create_transform(is_training=True, scale=tuple(crop_scale), hflip=0.5, color_jitter=None, **common)
    # crop_pct=1: resize the short side to exactly `image_size`, then centre-crop (Resize(224) + CenterCrop(224)).
    evaluation = create_transform(is_training=False, crop_pct=1.0, **common)
    return train, evaluation

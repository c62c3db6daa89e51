"""Small generated datasets for tests (the suite must not need ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hisyngen.extras import missing_openmmlab, openmmlab_hint
from hisyngen.spec import DatasetSpec

# For a single test outside the MMSegmentation modules (conftest leaves those out) that needs the plugin.
needs_openmmlab = pytest.mark.skipif(bool(missing_openmmlab()), reason=openmmlab_hint("this test", missing_openmmlab()))

# The build settings of the slow build and demo tests, small enough to run in seconds: 48 px images,
# 32 px discriminators, one epoch, one worker.
TINY_BUILD = {
    "count": 6,
    "synthesis": {"size": 48},
    "discriminator": {"epochs": 1, "negatives": 16, "image_size": 32, "batch_size": 8},
    "realism": {"max_images": 16, "epochs": 1, "image_size": 32},
    "filter_batch_size": 4,
    "workers": 1,
}

# One flat, clearly distinct colour per class so a test can tell which source a pixel came from.
CLASS_COLOURS = [(200, 60, 90), (230, 150, 190), (90, 40, 160), (170, 120, 60), (60, 160, 140)]


def tissue_image(cls: int, size: tuple[int, int] = (32, 32), seed: int = 0, white_corner: int = 0) -> np.ndarray:
    """RGB uint8 image: a class colour with mild noise, optionally a white square in the top-left."""
    rng = np.random.default_rng(seed)
    h, w = size
    image = np.empty((h, w, 3), np.uint8)
    image[:] = CLASS_COLOURS[cls % len(CLASS_COLOURS)]
    noise = rng.integers(-6, 7, size=(h, w, 3))
    image = np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)
    if white_corner:
        image[:white_corner, :white_corner] = 250
    return image


def write_rgb(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[:, :, ::-1])
    return path


def write_mask(path: Path, mask: np.ndarray, palette: list[int] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(mask.astype(np.uint8))
    if palette is not None:
        image.putpalette(palette)
    image.save(path)
    return path


def label_name(labels: tuple[int, ...], style: str) -> str:
    if style == "run":
        return "[" + "".join(map(str, labels)) + "]"
    if style == "commas":
        return "[" + ", ".join(map(str, labels)) + "]"
    return "[" + " ".join(map(str, labels)) + "]"


def write_benchmark(
    root: Path,
    spec: DatasetSpec,
    train_labels: list[tuple[int, ...]],
    style: str,
    n_val: int = 2,
    n_test: int = 2,
    size: int = 32,
    train_dir: str | None = None,
) -> Path:
    """A benchmark-layout dataset: labelled train images and val/test image+mask pairs."""
    train = root / (train_dir or spec.split_dirs["train"][0])
    train.mkdir(parents=True, exist_ok=True)
    for i, labels in enumerate(train_labels):
        cls = labels.index(1)
        sep = "+" if style == "run" else "-"
        write_rgb(train / f"img{i:03d}{sep}{label_name(labels, style)}.png", tissue_image(cls, (size, size), seed=i))
    for split, n in (("val", n_val), ("test", n_test)):
        folder = root / spec.split_dirs[split][0]
        for i in range(n):
            mask = np.zeros((size, size), np.uint8)
            mask[:, size // 2 :] = 1 % spec.num_classes
            mask[: size // 4] = spec.background_index
            image = np.zeros((size, size, 3), np.uint8)
            for value in np.unique(mask):
                colour = (255, 255, 255) if value == spec.background_index else CLASS_COLOURS[value]
                image[mask == value] = colour
            write_rgb(folder / spec.image_dir / f"{split}{i}.png", image)
            write_mask(folder / spec.mask_dir / f"{split}{i}.png", mask, spec.mask_palette())
    return root

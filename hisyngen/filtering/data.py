"""Image sets for the discriminator: real images on disk, synthetic images generated or read.

Every item is addressed by position and produced deterministically (a synthetic item is sample i of
the strategy's "discriminator" random stream, never a corpus sample), so results do not depend on
the number of data-loading workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from hisyngen.errors import HisynError
from hisyngen.imageio import is_image_file, read_rgb

REAL_FROM = ("multi", "all")
"""Where real (positive) images come from: train images with two or more tissue labels (the paper),
or every train image; a folder path is accepted too."""


def fit_size(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size (area interpolation when shrinking, bilinear when growing)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrink = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def real_image_paths(source: Any, real_from: str) -> list[Path]:
    """Paths of the real images a discriminator trains on (see :data:`REAL_FROM`)."""
    return [path for path, _ in real_images(source, real_from)]


def real_images(source: Any, real_from: str) -> list[tuple[Path, tuple[int, ...] | None]]:
    """(path, label vector) of the real images a discriminator trains on; labels None for a folder."""
    if real_from in REAL_FROM:
        records = source.multi_tissue() if real_from == "multi" else source.train
        paths = [(r.path, r.labels) for r in records]
    else:
        folder = Path(real_from)
        if not folder.is_dir():
            raise HisynError(f"--real-from must be one of {', '.join(REAL_FROM)} or a folder of real images, got {real_from!r}")
        paths = [(p, None) for p in sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))]
    if not paths:
        counts = {"multi": len(source.multi_tissue()), "all": len(source.train)}
        raise HisynError(
            f"no real images to train the discriminator on (--real-from {real_from}): the source has "
            f"{counts['multi']} train images with two or more tissue labels and {counts['all']} in all; "
            "use --real-from all (every real train image) or --real-from FOLDER (a folder of real patches)"
        )
    return paths


@dataclass(frozen=True)
class ImageSet:
    """A list of images of one kind (real = 1 or synthetic = 0), produced on demand at ``size``."""

    label: int
    size: int
    paths: tuple[Path, ...] = ()
    """Files on disk (real images, or a synthetic corpus' images)."""
    generated: int = 0
    """Number of on-the-fly synthetic samples (when no paths)."""
    pack_folder: str | None = None
    strategy: Any = None
    seed: int = 0
    stream: str = "discriminator"
    presence: tuple[tuple[int, ...], ...] = ()
    """Per item, which classes it holds (0/1 per class); empty when unknown (a folder of patches)."""

    def __len__(self) -> int:
        return len(self.paths) if self.paths else self.generated

    def load(self, index: int) -> np.ndarray:
        """Item ``index`` as RGB uint8 (size, size, 3)."""
        if self.paths:
            return fit_size(read_rgb(self.paths[index]), self.size)
        from hisyngen.synthesis import sample_rng

        pool = _open_pack(self.pack_folder)  # type: ignore[arg-type]
        sample = self.strategy.generate(pool, sample_rng(self.seed, self.strategy.name, index, self.stream))
        return fit_size(sample.image, self.size)


_PACKS: dict[str, Any] = {}


def _open_pack(folder: str) -> Any:
    """One memory-mapped pool per process (data-loading workers open their own)."""
    if folder not in _PACKS:
        from hisyngen.sources.pools import PoolPack

        _PACKS[folder] = PoolPack(Path(folder))
    return _PACKS[folder]


class LabelledImages:
    """(set, index) pairs from several ImageSets as one indexable dataset of (uint8 image, label)."""

    def __init__(self, sets: Sequence[ImageSet], items: Sequence[tuple[int, int]]) -> None:
        self.sets = list(sets)
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> tuple[np.ndarray, int]:
        which, index = self.items[position]
        image_set = self.sets[which]
        return image_set.load(index), image_set.label

    def labels(self) -> np.ndarray:
        return np.array([self.sets[s].label for s, _ in self.items], np.int64)

    def presence(self) -> np.ndarray | None:
        """(items, classes) 0/1 class presence, or None when a set does not know it."""
        if not all(len(s.presence) == len(s) for s in self.sets):
            return None
        return np.array([self.sets[s].presence[i] for s, i in self.items], np.int64).reshape(len(self.items), -1)


def split_items(sets: Sequence[ImageSet], val_fraction: float, seed: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """A seeded train/val split of every set's items (stratified: each set is split on its own)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E11]))
    train, val = [], []
    for which, image_set in enumerate(sets):
        order = rng.permutation(len(image_set))
        n_val = int(round(len(image_set) * val_fraction))
        if len(image_set) >= 2:
            n_val = min(max(n_val, 1), len(image_set) - 1)  # both parts get at least one item
        val.extend((which, int(i)) for i in sorted(order[:n_val]))
        train.extend((which, int(i)) for i in sorted(order[n_val:]))
    return train, val


def class_matched_weights(target: np.ndarray, presence: np.ndarray, iterations: int = 50,
                          max_ratio: float = 10.0) -> np.ndarray:
    """Weights (mean 1) under which each class is present in the same fraction of ``presence``'s
    rows as ``target`` says (iterative proportional fitting over the per-class marginals).

    Used on the synthetic images so that *which tissues* an image holds tells the discriminator
    nothing about real vs synthetic: only how it looks does. Weights are clipped to
    ``[1/max_ratio, max_ratio]`` so a few images never dominate; a class absent from one side is
    left as it is.
    """
    weights = np.ones(len(presence))
    present = presence.astype(bool)
    for _ in range(iterations):
        for c in range(present.shape[1]):
            share = weights[present[:, c]].sum() / weights.sum()
            t = float(np.clip(target[c], 1e-3, 1 - 1e-3))
            if 0 < share < 1 and 0 < target[c] < 1:
                weights[present[:, c]] *= t / share
                weights[~present[:, c]] *= (1 - t) / (1 - share)
        weights = np.clip(weights / weights.mean(), 1 / max_ratio, max_ratio)
    return weights / weights.mean()

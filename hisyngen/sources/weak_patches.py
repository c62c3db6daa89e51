"""Weakly-labelled training patches cut from pixel-annotated images (how BCSS-WSSS was built).

Windows are cut from the image/mask pairs of one split of a source; each window is named with the
tissue classes that cover at least ``min_fraction`` of it, in the source's own benchmark layout and
label style, so every hisyngen command reads the result like the real benchmark. A seeded share of
the images (``holdout``) is not cut but copied whole into the result's validation split, for
evaluation on images no training window came from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hisyngen.errors import HisynError
from hisyngen.imageio import atomic_write_bytes, atomic_write_text, encode_rgb_png, read_mask, read_rgb
from hisyngen.sources.labels import format_labels, labelled_name


def window_corners(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows along one axis; the last one is flush with the end."""
    if length < window:
        return []
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def make_weak_patches(
    source: Any,
    out: str | Path,
    split: str = "val",
    window: int = 224,
    stride: int = 224,
    min_fraction: float = 0.05,
    max_background: float = 0.5,
    holdout: float = 0.5,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Cut labelled windows from ``source``'s ``split`` into a new dataset at ``out``.

    Returns a summary (windows per label combination, held-out images).
    """
    from hisyngen.progress import progress_bar as tqdm  # a bar on a terminal, log lines elsewhere

    spec = source.spec
    records = source.splits.get(split, [])
    if not records:
        raise HisynError(f"{source.root} has no {split} image/mask pairs to cut windows from")
    if window < 8 or stride < 1:
        raise HisynError("window must be >= 8 and stride >= 1")
    if not 0 <= holdout < 1 or not 0 < min_fraction <= 1 or not 0 <= max_background <= 1:
        raise HisynError("need 0 <= holdout < 1, 0 < min_fraction <= 1 and 0 <= max_background <= 1")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise HisynError(f"{out} exists and is not empty; choose another folder")
    order = np.random.default_rng(seed).permutation(len(records))
    n_holdout = int(round(holdout * len(records)))
    held = sorted(int(i) for i in order[:n_holdout])
    cut = sorted(int(i) for i in order[n_holdout:])

    train_dir = out / spec.split_dirs["train"][0]
    val_dir = out / spec.split_dirs["val"][0]
    train_dir.mkdir(parents=True, exist_ok=True)
    combos: dict[str, int] = {}
    written = skipped = 0
    for i in tqdm(cut, desc="cutting windows", unit="image", disable=not progress):
        record = records[i]
        image, mask = read_rgb(record.path), read_mask(record.mask_path, spec)
        if image.shape[:2] != mask.shape:
            raise HisynError(f"{record.mask_path}: mask size {mask.shape} differs from its image {image.shape[:2]}")
        for y in window_corners(mask.shape[0], window, stride):
            for x in window_corners(mask.shape[1], window, stride):
                patch = mask[y : y + window, x : x + window]
                counts = np.bincount(patch.ravel(), minlength=256)
                if counts[spec.background_index] / patch.size > max_background:
                    skipped += 1
                    continue
                labels = tuple(int(counts[c] / patch.size >= min_fraction) for c in range(spec.num_classes))
                if not any(labels):
                    skipped += 1
                    continue
                stem = f"{Path(record.path).stem}_y{y}_x{x}"
                name = labelled_name(stem, labels, spec.label_style, written)
                atomic_write_bytes(train_dir / name, encode_rgb_png(image[y : y + window, x : x + window]))
                combos[format_labels(labels)] = combos.get(format_labels(labels), 0) + 1
                written += 1
    for i in held:  # whole images, for evaluation
        record = records[i]
        for kind, path in ((spec.image_dir, record.path), (spec.mask_dir, record.mask_path)):
            (val_dir / kind).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, val_dir / kind / Path(path).name)
    summary = {
        "source": str(source.root), "split": split, "window": window, "stride": stride,
        "min_fraction": min_fraction, "max_background": max_background, "holdout": holdout, "seed": seed,
        "windows": written, "skipped_windows": skipped, "label_combinations": dict(sorted(combos.items())),
        "cut_images": [str(records[i].path.name) for i in cut], "held_out_images": [str(records[i].path.name) for i in held],
    }
    atomic_write_text(out / "weak_patches.json", json.dumps(summary, indent=2) + "\n")
    return summary

"""MMSeg exports (docs/formats.md, "MMSegmentation export") for the hisyngen.mmseg tests.

Unit tests take ``tiny_export`` (hand-written, exact content known); the end-to-end tests take
``mmseg_export``, a real ``hisyngen export`` of Mosaic + Bezier corpora from ``bcss-wsss-mini``
(or from a generated BCSS-layout source when ../shared/data is absent). Import the fixtures into
the test module.

Layout written (BCSS-WSSS classes and palette):
  4 synthetic 64x64 images (two tissues each + a white 255 corner), 4 real train images of
  varying size (two single-label, two multi-label), 2 val and 2 test images with masks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hisyngen.imageio import atomic_write_bytes, encode_mask_png, encode_rgb_png
from hisyngen.spec import BCSS_WSSS, IGNORE_INDEX, DatasetSpec

# One flat colour per class (+ noise), so a model can in principle tell tissues apart.
COLOURS = [(200, 60, 90), (230, 150, 190), (90, 40, 160), (170, 120, 60), (60, 160, 140)]
WHITE = (245, 245, 245)


def paint(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB image for an index mask: class colours, white where the mask is 255, mild noise."""
    image = np.empty(mask.shape + (3,), np.uint8)
    for value in np.unique(mask):
        image[mask == value] = WHITE if value == IGNORE_INDEX else COLOURS[int(value) % len(COLOURS)]
    noise = rng.integers(-5, 6, size=image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def two_tissue_mask(h: int, w: int, a: int, b: int, corner: int = 0) -> np.ndarray:
    """Left half class ``a``, right half ``b``; optional white (255) top-left square."""
    mask = np.full((h, w), a, np.uint8)
    mask[:, w // 2:] = b
    if corner:
        mask[:corner, :corner] = IGNORE_INDEX
    return mask


def label_vector(mask: np.ndarray, num_classes: int) -> list[int]:
    present = set(np.unique(mask).tolist()) - {IGNORE_INDEX}
    return [int(c in present) for c in range(num_classes)]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def write_tiny_export(root: Path, spec: DatasetSpec = BCSS_WSSS, size: int = 64, seed: int = 0) -> Path:
    """Write a complete tiny MMSeg export at ``root`` and return it."""
    rng = np.random.default_rng(seed)
    palette = spec.mask_palette()
    c = spec.num_classes
    lines: dict[str, list[str]] = {"train": [], "train_real": [], "val": [], "test": []}
    synthetic_rows, real_rows = [], []

    for i, (a, b) in enumerate([(0, 1), (1, 2), (2, 3), (3, 0)]):
        sample_id = f"mosaic-s0-{i:06d}"
        mask = two_tissue_mask(size, size, a % c, b % c, corner=8)
        _write(root / "img_dir" / "train" / f"{sample_id}.png", encode_rgb_png(paint(mask, rng)))
        _write(root / "ann_dir" / "train" / f"{sample_id}.png", encode_mask_png(mask, palette))
        lines["train"].append(sample_id)
        synthetic_rows.append({"id": sample_id, "strategy": "mosaic", "labels": label_vector(mask, c),
                               "disc_score": None, "seed": 0, "sources": [f"training/src{a}.png", f"training/src{b}.png"]})

    # Real train images: (height, width, classes); sizes vary like WSSS4LUAD's.
    for i, (h, w, classes) in enumerate([(64, 64, (0,)), (72, 80, (2,)), (64, 96, (0, 1)), (80, 64, (1, 3))]):
        sample_id = f"real-{i:04d}"
        mask = two_tissue_mask(h, w, classes[0], classes[-1])
        _write(root / "img_dir" / "train_real" / f"{sample_id}.png", encode_rgb_png(paint(mask, rng)))
        lines["train_real"].append(sample_id)
        real_rows.append({"id": sample_id, "labels": label_vector(mask, c), "source": f"training/{sample_id}[x].png"})

    for split, shapes in (("val", [(64, 64), (64, 64)]), ("test", [(64, 64), (96, 80)])):
        for i, (h, w) in enumerate(shapes):
            sample_id = f"{split}-{i:04d}"
            mask = two_tissue_mask(h, w, i % c, (i + 2) % c, corner=6)
            _write(root / "img_dir" / split / f"{sample_id}.png", encode_rgb_png(paint(mask, rng)))
            _write(root / "ann_dir" / split / f"{sample_id}.png", encode_mask_png(mask, palette))
            lines[split].append(sample_id)

    for split, ids in lines.items():
        _write(root / "splits" / f"{split}.txt", ("\n".join(ids) + "\n").encode())
    _write(root / "synthetic.jsonl", "".join(json.dumps(r) + "\n" for r in synthetic_rows).encode())
    _write(root / "real.jsonl", "".join(json.dumps(r) + "\n" for r in real_rows).encode())
    meta = {"dataset": spec.name, "classes": list(spec.classes),
            "palette": [list(spec.palette[i]) for i in range(c)], "ignore_index": IGNORE_INDEX,
            "source_background_index": spec.background_index, "strategies": ["mosaic"],
            "hisyngen_version": "test"}
    _write(root / "metainfo.json", json.dumps(meta, indent=2).encode())
    return root


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    """The export described above, always (unit tests assert its exact content). Read-only."""
    return write_tiny_export(tmp_path_factory.mktemp("tiny-export") / "export")


SHARED_BCSS = Path(__file__).resolve().parents[2] / "shared" / "data" / "bcss-wsss-mini"


@pytest.fixture(scope="session")
def mmseg_export(tmp_path_factory) -> Path:
    """A real ``hisyngen export --format mmseg`` of 16 Mosaic + 16 Bezier samples (64 px) with the
    real train/val/test images of bcss-wsss-mini (a generated source without ../shared/data).
    Read-only: copy before writing."""
    from fixtures import write_benchmark
    from hisyngen.corpus import synthesize
    from hisyngen.export import export_dataset
    from hisyngen.sources import open_source
    from hisyngen.synthesis import make_strategy

    base = tmp_path_factory.mktemp("mmseg-export")
    if SHARED_BCSS.is_dir():
        source = open_source(SHARED_BCSS)
    else:
        labels = [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)] * 2 + [(1, 1, 0, 0), (0, 1, 1, 1)] * 2
        source = open_source(write_benchmark(base / "src", BCSS_WSSS, labels, style="run", n_val=2, n_test=2, size=64))
    corpora = []
    for name in ("mosaic", "bezier"):
        synthesize(source, make_strategy(name, {"size": 64}), base / name, 16, seed=0)
        corpora.append(base / name)
    export_dataset(corpora, source, "mmseg", base / "export")
    return base / "export"

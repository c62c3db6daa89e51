"""Helpers shared by the export tests and the fault tests: a tiny benchmark source, two corpora
over it, and an offline Hugging Face load (one home, imported as ``from export_fixtures import ...``)."""

from __future__ import annotations

from pathlib import Path

import cv2

from hisyngen.corpus import synthesize
from hisyngen.sources import open_source
from hisyngen.spec import get_spec
from hisyngen.synthesis import make_strategy

from fixtures import tissue_image, write_benchmark

BCSS = get_spec("bcss-wsss")
LABELS = [(1, 0, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1), (1, 1, 0, 0)]
TIF_NAME = "img900+[0110].tif"  # a non-PNG train image: exported re-encoded, same pixels


def make_source(root: Path, spec=BCSS, labels=LABELS):
    """A tiny benchmark source (32 px) with val/test masks holding the background index."""
    write_benchmark(root, spec, labels, style="run" if spec is BCSS else "spaces", n_val=2, n_test=2, size=32)
    if spec is BCSS:
        cv2.imwrite(str(root / "training" / TIF_NAME), tissue_image(1, (40, 36), seed=9)[:, :, ::-1])
    return open_source(root)


def make_corpora(source, folder: Path, count: int = 6) -> list[Path]:
    """A Mosaic and a Bezier corpus of ``count`` 32 px samples each."""
    out = []
    for name in ("mosaic", "bezier"):
        synthesize(source, make_strategy(name, {"size": 32}), folder / name, count, seed=0)
        out.append(folder / name)
    return out


def load_hf(folder: Path, cache: Path, monkeypatch, subset: str | None = None):
    """``datasets.load_dataset(folder[, subset])`` offline, caching under ``cache``."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from datasets import load_dataset

    return load_dataset(str(folder), subset, cache_dir=str(cache))

"""Helpers shared by the export tests and the fault tests: a tiny benchmark source, two corpora
over it, and an offline Hugging Face load (one home, imported as ``from export_fixtures import ...``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hisyngen.corpus import Corpus, synthesize
from hisyngen.imageio import read_mask, read_rgb
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


def ground_truth(record) -> np.ndarray:
    mask = read_mask(record.mask_path)
    mask[mask == BCSS.background_index] = 255
    return mask


def check_hf_pixels(ds, weak, source, corpora) -> None:
    """Every split of a loaded HF export (default subset ``ds``, ``weak`` subset) equals the corpora and
    source files pixel for pixel."""
    masks, images, seeds = {}, {}, {}
    for folder in corpora:
        corpus = Corpus(folder)
        for row in corpus.rows():
            masks[row["id"]] = read_mask(corpus.mask_path(row))
            images[row["id"]] = read_rgb(corpus.image_path(row))
            seeds[row["id"]] = corpus.config.seed
    strategy = ds["train"].features["strategy"]
    for row in ds["train"]:
        assert row["label"].mode == "P"
        np.testing.assert_array_equal(np.array(row["label"]), masks.pop(row["id"]))
        np.testing.assert_array_equal(np.array(row["image"].convert("RGB")), images[row["id"]])
        assert strategy.int2str(row["strategy"]) == row["id"].split("-")[0]
        assert row["seed"] == seeds[row["id"]]
    assert masks == {}
    records = {r.id: r for r in source.train}
    assert set(weak) == {"train"} and weak["train"].column_names == ["image", "tissues", "sources", "id"]
    assert weak["train"].features["tissues"] == ds["train"].features["tissues"]
    for row in weak["train"]:
        record = records.pop(row["sources"][0])
        assert row["tissues"] == [c for c, v in enumerate(record.labels) if v]
        np.testing.assert_array_equal(np.array(row["image"].convert("RGB")), read_rgb(record.path))
    assert records == {}
    for split, records in (("validation", source.val), ("test", source.test)):
        assert [row["id"] for row in ds[split]] == [r.path.stem for r in records]
        for row, record in zip(ds[split], records):
            assert row["label"].mode == "P"
            truth = ground_truth(record)
            np.testing.assert_array_equal(np.array(row["label"]), truth)
            assert row["tissues"] == sorted(set(np.unique(truth).tolist()) - {255})

"""MMSegmentation export: ``img_dir``/``ann_dir`` per split, split files, label lists, ``metainfo.json``.

Layout and fields: docs/formats.md, "MMSegmentation export" (read by ``hisyngen.mmseg.datasets``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from hisyngen import __version__
from hisyngen.export.common import SPLITS, ExportPlan
from hisyngen.spec import IGNORE_INDEX


def metainfo(plan: ExportPlan) -> dict:
    """``metainfo.json``: classes, palette (per class) and what the mask values mean."""
    spec = plan.spec
    return {
        "dataset": spec.name,
        "classes": list(spec.classes),
        "palette": [list(spec.palette[i]) for i in range(spec.num_classes)],
        "ignore_index": IGNORE_INDEX,
        "source_background_index": spec.background_index,
        "strategies": plan.strategies,
        "hisyngen_version": __version__,
    }


def write_mmseg(plan: ExportPlan, folder: Path, on_sample: Callable[[], None] = lambda: None) -> dict[str, int]:
    """Write the MMSeg layout of ``plan`` into the (empty, staged) ``folder``; returns counts per split."""
    for split in SPLITS:
        (folder / "img_dir" / split).mkdir(parents=True)
        if split != "train_real":  # real train masks come later, from `hisyngen pseudo-label`
            (folder / "ann_dir" / split).mkdir(parents=True)
    (folder / "splits").mkdir()
    counts = {}
    with open(folder / "synthetic.jsonl", "w", encoding="utf-8") as synthetic, \
            open(folder / "real.jsonl", "w", encoding="utf-8") as real:
        for split in SPLITS:
            n = 0
            with open(folder / "splits" / f"{split}.txt", "w", encoding="utf-8") as ids:
                for sample in plan.samples(split):
                    prepared = plan.prepare(sample)
                    (folder / "img_dir" / split / f"{sample.id}.png").write_bytes(prepared.image_png)
                    if prepared.mask_png is not None:
                        (folder / "ann_dir" / split / f"{sample.id}.png").write_bytes(prepared.mask_png)
                    ids.write(sample.id + "\n")
                    if split == "train":
                        synthetic.write(json.dumps({
                            "id": sample.id, "strategy": sample.strategy, "labels": list(sample.labels or ()),
                            "disc_score": sample.disc_score, "seed": sample.seed, "sources": list(sample.sources),
                        }) + "\n")
                    elif split == "train_real":
                        real.write(json.dumps({"id": sample.id, "labels": list(sample.labels or ()),
                                               "source": sample.source_path}) + "\n")
                    n += 1
                    on_sample()
            counts[split] = n
    (folder / "metainfo.json").write_text(json.dumps(metainfo(plan), indent=2) + "\n", encoding="utf-8")
    return counts

"""The iterative stage (docs/method.md, Training: Stage 2): pseudo masks for the real train images of an export.

For each real train image (``img_dir/train_real``, labels from ``real.jsonl``):

- one tissue label: that class everywhere;
- several: the model's prediction with the absent classes suppressed before the argmax;
- no label at all: 255 everywhere (nothing is known);
- white slide background (``hisyngen.sources.background.background_mask`` defaults): 255.

Masks are written as palette PNGs to ``ann_dir/train_real/<id>.png`` (atomic renames), which the
stage-2 configs read with ``HisynMixedDataset(real_masks='pseudo')``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from hisyngen.errors import HisynError
from hisyngen.imageio import atomic_write_bytes, encode_mask_png, read_rgb
from hisyngen.mmseg.datasets import read_export_metainfo, read_ids, read_labels_jsonl
from hisyngen.sources.background import BackgroundParams, background_mask
from hisyngen.spec import IGNORE_INDEX, flat_palette


def pseudo_mask(labels: np.ndarray, image: np.ndarray, logits: np.ndarray | None,
                background: BackgroundParams = BackgroundParams()) -> np.ndarray:
    """Pseudo mask (H, W) uint8 of one real image from its 0/1 ``labels`` and, for multi-label
    images, the model's ``logits`` (C, H, W); white background -> 255."""
    present = np.flatnonzero(np.asarray(labels))
    height, width = image.shape[:2]
    if present.size == 0:
        return np.full((height, width), IGNORE_INDEX, np.uint8)
    if present.size == 1:
        mask = np.full((height, width), present[0], np.uint8)
    else:
        if logits is None or logits.shape[1:] != (height, width):
            raise ValueError("a multi-label image needs logits (C, H, W) of the image's size")
        scores = np.where(np.asarray(labels, bool)[:, None, None], logits, -np.inf)
        mask = scores.argmax(axis=0).astype(np.uint8)
    mask[background_mask(image, background)] = IGNORE_INDEX
    return mask


@dataclass
class PseudoLabelReport:
    """What :func:`pseudo_label` wrote."""

    out_dir: Path
    single_label: int = 0
    predicted: int = 0
    unlabelled: int = 0
    ids: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.single_label + self.predicted + self.unlabelled

    def summary(self) -> str:
        return (f"wrote {self.total} pseudo masks to {self.out_dir}: {self.single_label} single-label, "
                f"{self.predicted} predicted (multi-label), {self.unlabelled} without labels (all 255)")


def default_device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def pseudo_label(config: str | Path, checkpoint: str | Path, export_dir: str | Path, *,
                 device: str | None = None, batch_size: int = 8, cfg_options: dict[str, Any] | None = None,
                 background: BackgroundParams = BackgroundParams(),
                 progress: Callable[[Iterable], Iterable] | None = None) -> PseudoLabelReport:
    """Write pseudo masks for every real train image of ``export_dir`` (see module docstring).

    ``progress`` wraps the iteration over images (e.g. ``tqdm``); multi-label images are predicted
    ``batch_size`` at a time (consecutive images of equal size).
    """
    root = Path(export_dir)
    meta = read_export_metainfo(root)
    num_classes = len(meta["classes"])
    labels = read_labels_jsonl(root / "real.jsonl", num_classes)
    split = root / "splits" / "train_real.txt"
    ids = read_ids(split) if split.is_file() else list(labels)
    missing = [i for i in ids if i not in labels]
    if missing:
        raise HisynError(f"{root}: real ids without a row in real.jsonl: {', '.join(missing[:5])}")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise HisynError(f"checkpoint not found: {checkpoint}")

    from mmseg.apis import inference_model, init_model

    model = init_model(str(config), str(checkpoint), device=device or default_device(), cfg_options=cfg_options)
    if model.decode_head.num_classes != num_classes:
        raise HisynError(f"the model predicts {model.decode_head.num_classes} classes but the export has {num_classes}")
    out_dir = root / "ann_dir" / "train_real"
    out_dir.mkdir(parents=True, exist_ok=True)
    palette = flat_palette(enumerate(meta["palette"]))  # class colours by index, 255 black
    report = PseudoLabelReport(out_dir=out_dir)

    def write(sample_id: str, image: np.ndarray, logits: np.ndarray | None) -> None:
        mask = pseudo_mask(labels[sample_id], image, logits, background)
        atomic_write_bytes(out_dir / f"{sample_id}.png", encode_mask_png(mask, palette))
        report.ids.append(sample_id)

    def load(sample_id: str) -> tuple[str, np.ndarray]:
        return sample_id, read_rgb(root / "img_dir" / "train_real" / f"{sample_id}.png")

    items: Iterable[str] = progress(ids) if progress else ids
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        # Batches of equal-size images only: mmseg's test preprocessing cannot stack others.
        by_shape = sorted(pending, key=lambda item: item[1].shape)
        for _, group in groupby(by_shape, key=lambda item: item[1].shape):
            group = list(group)
            for start in range(0, len(group), batch_size):
                chunk = group[start:start + batch_size]
                results = inference_model(model, [np.ascontiguousarray(img[:, :, ::-1]) for _, img in chunk])
                for (sample_id, image), result in zip(chunk, results):
                    write(sample_id, image, result.seg_logits.data.float().cpu().numpy())
        report.predicted += len(pending)
        pending.clear()

    for sample_id in items:
        count = int(labels[sample_id].sum())
        sample_id, image = load(sample_id)
        if count > 1:
            pending.append((sample_id, image))
            if len(pending) >= batch_size:
                flush()
            continue
        write(sample_id, image, None)
        if count == 1:
            report.single_label += 1
        else:
            report.unlabelled += 1
    flush()
    return report

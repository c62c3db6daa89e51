"""Evaluate a trained checkpoint on image/mask pairs: per-class IoU, mIoU, fwIoU, and prediction sheets.

Used by ``hisyngen demo --train`` (the demo's test masks) and ``tools/bench_quality.py`` (held-out
masks of a real source). Pixels whose ground truth is not a tissue class (the dataset's background
index, 255) are left out, as :class:`hisyngen.mmseg.metrics.TissueIoUMetric` leaves out 255. The
scores come from :func:`hisyngen.mmseg.metrics.iou_scores` (numpy, from a confusion matrix): IoU and
mIoU as mmseg's ``total_area_to_metrics``, which ``TissueIoUMetric`` calls, computes them
(intersection / union per class; the mean over classes with a defined IoU), and fwIoU by
:func:`hisyngen.mmseg.metrics.frequency_weighted_iou`, the one function both use.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hisyngen.errors import HisynError


def final_checkpoint(work_dir: Path) -> Path:
    """The checkpoint the last run in ``work_dir`` saved last: the one mmengine's ``last_checkpoint``
    file names (read as a name in ``work_dir``, never a path out of it), else ``iter_N.pth`` with the
    largest N. The file matters when a shorter run followed a longer one in the same work dir."""
    work_dir = Path(work_dir)
    named = work_dir / "last_checkpoint"
    if named.is_file():
        last = work_dir / Path(named.read_text(encoding="utf-8").strip()).name
        if last.name and last.is_file():
            return last
    checkpoints = list(work_dir.glob("iter_*.pth"))
    if not checkpoints:
        raise HisynError(f"no iter_*.pth checkpoint in {work_dir}: the training did not finish")
    return max(checkpoints, key=lambda p: int(p.stem.split("_")[1]))


EVALUATE_LOGGER = "hisyngen-evaluate"
"""The one MMLogger instance evaluations log through (one per call would pile up instances)."""


def stderr_logger() -> Any:
    """The MMLogger :data:`EVALUATE_LOGGER`, made the newest (mmengine logs "Loads checkpoint ..."
    through the newest) and writing at WARNING to the current ``sys.stderr`` (stdout may carry JSON)."""
    from mmengine.logging import MMLogger

    if MMLogger.check_instance_created(EVALUATE_LOGGER):
        logger = MMLogger.get_instance(EVALUATE_LOGGER)
        MMLogger._instance_dict.move_to_end(EVALUATE_LOGGER)  # mmengine has no public way to do this
    else:
        with contextlib.redirect_stdout(sys.stderr):  # its stream handler takes sys.stdout as it is now
            logger = MMLogger.get_instance(EVALUATE_LOGGER, log_level="WARNING")
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler:  # not a FileHandler (a subclass)
            # stderr may have been replaced since (a test's capture) and the old stream closed:
            # swap it without setStream, which flushes the old one first
            handler.acquire()
            try:
                handler.stream = sys.stderr
            finally:
                handler.release()
    return logger


def prediction_sheet(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, spec: Any) -> np.ndarray:
    """image | ground truth overlay | prediction overlay, side by side (RGB uint8)."""
    from hisyngen.preview import overlay

    return np.concatenate([image, overlay(image, gt, spec), overlay(image, pred, spec)], axis=1)


def evaluate_checkpoint(config: Path, checkpoint: Path, pairs: Sequence[Any], spec: Any, *, slide: bool = False,
                        overlays: int = 0, device: str = "cpu") -> tuple[dict[str, Any], list[np.ndarray]]:
    """Scores of ``checkpoint`` (trained with ``config``) on ``pairs`` (records with ``path`` and
    ``mask_path``), and :func:`prediction_sheet` of the first ``overlays`` pairs (pixels left out of
    the scores shown as ignored).

    Scores are percentages rounded to 2 decimals: ``mIoU``, ``fwIoU``, ``IoU`` per class, and the
    ``pixels`` counted. ``slide``: 224 px sliding windows with stride 112 instead of whole images.
    """
    import hisyngen.mmseg  # noqa: F401  (compat + registration)
    from mmseg.apis import inference_model, init_model

    from hisyngen.imageio import read_mask, read_rgb
    from hisyngen.mmseg.metrics import iou_scores

    if not pairs:
        raise HisynError("no image/mask pairs to evaluate on")
    stderr_logger()
    with contextlib.redirect_stdout(sys.stderr):
        model = init_model(str(config), str(checkpoint), device=device)
    if slide:
        model.test_cfg = dict(mode="slide", crop_size=(224, 224), stride=(112, 112))
    c = spec.num_classes
    confusion = np.zeros((c, c), np.int64)
    sheets = []
    for k, record in enumerate(pairs):
        with contextlib.redirect_stdout(sys.stderr):
            result = inference_model(model, str(record.path))
        pred = result.pred_sem_seg.data[0].cpu().numpy().astype(np.int64)
        gt = read_mask(record.mask_path, spec).astype(np.int64)
        valid = gt < c  # drops the background index and 255
        confusion += np.bincount(gt[valid] * c + pred[valid], minlength=c * c).reshape(c, c)
        if k < overlays:
            sheets.append(prediction_sheet(read_rgb(record.path), np.where(valid, gt, 255).astype(np.uint8),
                                           np.where(valid, pred, 255).astype(np.uint8), spec))
    intersect = np.diag(confusion)
    scores = iou_scores(intersect, confusion.sum(0) + confusion.sum(1) - intersect, confusion.sum(1))
    return ({"mIoU": round(100 * scores["mIoU"], 2), "fwIoU": round(100 * scores["fwIoU"], 2),
             "IoU": {name: round(100 * float(v), 2) for name, v in zip(spec.classes, scores["IoU"])},
             "pixels": int(confusion.sum())}, sheets)

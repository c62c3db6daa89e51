"""Segmentation metric of the paper: mmseg's ``IoUMetric`` plus frequency-weighted IoU (fwIoU).

``TissueIoUMetric`` is mmseg's ``IoUMetric`` with two additions, so its numbers compare with any
mmseg run: it takes the same ``iou_metrics`` (``'mIoU'``, ``'mDice'``, ``'mFscore'``),
``nan_to_num`` and ``beta`` arguments and returns the same keys computed by the same code
(``aAcc``; ``mIoU`` + ``mAcc``; ``mDice`` + ``mAcc``; ``mFscore`` + ``mPrecision`` +
``mRecall``), then adds

- ``fwIoU`` = sum over classes of (ground-truth pixel share of the class) x IoU; classes without
  ground-truth pixels weigh 0 (so ``nan_to_num`` only matters for a split with no valid pixel);
- one key per class for each requested family: ``IoU.<class>``, ``Dice.<class>``,
  ``Fscore.<class>`` (the per-class table mmseg prints has Acc, Precision and Recall as well).

As in mmseg: pixels whose ground truth is the ignore index (255: white background, excluded
tissue) are dropped; areas are summed over the whole split; a class absent from both ground truth
and prediction has a NaN score, left out of the class mean (``nanmean``) unless ``nan_to_num``
replaces it; all values are percentages rounded to 2 decimals.
"""

from __future__ import annotations

import numpy as np
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS

from hisyngen.errors import HisynError

PER_CLASS_FAMILIES = {"mIoU": "IoU", "mDice": "Dice", "mFscore": "Fscore"}
"""``iou_metrics`` entry -> the per-class score reported as ``<family>.<class>``."""


def frequency_weighted_iou(iou: np.ndarray, label_area: np.ndarray) -> float:
    """sum_c (label_area_c / total) x IoU_c over classes with ground-truth pixels (NaN if none)."""
    iou = np.asarray(iou, dtype=np.float64)
    label_area = np.asarray(label_area, dtype=np.float64)
    total = label_area.sum()
    if total <= 0:
        return float("nan")
    present = label_area > 0  # a class with ground truth has a union > 0, so a finite IoU
    return float(np.sum(label_area[present] / total * iou[present]))


def iou_scores(intersect: np.ndarray, union: np.ndarray, label_area: np.ndarray) -> dict[str, object]:
    """Per-class IoU, mIoU, fwIoU and aAcc (fractions) from per-class pixel areas (no torch)."""
    intersect = np.asarray(intersect, dtype=np.float64)
    union = np.asarray(union, dtype=np.float64)
    label_area = np.asarray(label_area, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = intersect / union
    total = label_area.sum()
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    aacc = float(intersect.sum() / total) if total > 0 else float("nan")
    return {"IoU": iou, "mIoU": miou, "fwIoU": frequency_weighted_iou(iou, label_area), "aAcc": aacc}


def _percent(value: float) -> float:
    # mmseg's rounding of its summary values, in float64 (its areas are float32: 57.14 not 57.1399994)
    return float(np.round(np.float64(value) * 100, 2))


@METRICS.register_module()
class TissueIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` (same arguments, same keys) plus ``fwIoU`` and per-class scores."""

    def __init__(self, iou_metrics: list[str] | str = ("mIoU",), **kwargs) -> None:  # noqa: ANN003
        metrics = [iou_metrics] if isinstance(iou_metrics, str) else list(iou_metrics)
        unknown = [m for m in metrics if m not in PER_CLASS_FAMILIES]
        if unknown or not metrics:
            # mmseg only notices at the first validation, after an epoch of training
            raise HisynError(f"iou_metrics {metrics} must be one or more of {', '.join(PER_CLASS_FAMILIES)}")
        super().__init__(iou_metrics=metrics, **kwargs)

    def compute_metrics(self, results: list) -> dict[str, float]:
        # mmseg's summary keys (and its per-class table in the log), computed by mmseg itself.
        metrics = super().compute_metrics(results)
        if self.format_only:
            return metrics
        intersect, union, pred_area, label_area = (sum(column) for column in zip(*results))
        per_class = self.total_area_to_metrics(intersect, union, pred_area, label_area, self.metrics,
                                               self.nan_to_num, self.beta)
        iou = (intersect / union).numpy()
        fwiou = frequency_weighted_iou(iou, label_area.numpy())
        if self.nan_to_num is not None:
            fwiou = float(np.nan_to_num(fwiou, nan=self.nan_to_num))
        metrics["fwIoU"] = _percent(fwiou)
        classes = self.dataset_meta["classes"]
        for metric in self.metrics:
            family = PER_CLASS_FAMILIES[metric]
            for name, value in zip(classes, per_class[family]):
                metrics[f"{family}.{name}"] = _percent(value)
        return metrics

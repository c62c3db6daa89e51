"""Segmentation metric of the paper: per-class IoU, mIoU and frequency-weighted IoU (fwIoU).

Pixels whose ground truth is the ignore index (255: white background, excluded tissue) are dropped
before counting (mmseg's ``IoUMetric.intersect_and_union``). Areas are summed over the whole
split, then:

- ``IoU.<class>`` = intersection / union of that class (NaN when the class is neither in the
  ground truth nor predicted);
- ``mIoU`` = plain mean of the per-class IoUs over tissue classes, NaN classes left out;
- ``fwIoU`` = sum over classes of (ground-truth pixel share of the class) x IoU; classes without
  ground-truth pixels weigh 0;
- ``aAcc`` = pixel accuracy.

All are percentages, rounded to 2 decimals, like mmseg's metrics.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from mmengine.logging import MMLogger, print_log
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS


def iou_scores(intersect: np.ndarray, union: np.ndarray, label_area: np.ndarray) -> dict[str, object]:
    """Per-class IoU, mIoU, fwIoU and aAcc (fractions) from per-class pixel areas."""
    intersect = np.asarray(intersect, dtype=np.float64)
    union = np.asarray(union, dtype=np.float64)
    label_area = np.asarray(label_area, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = intersect / union
    total = label_area.sum()
    freq = label_area / total if total > 0 else np.zeros_like(label_area)
    fwiou = float(np.sum(freq[label_area > 0] * iou[label_area > 0])) if total > 0 else float("nan")
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    aacc = float(intersect.sum() / total) if total > 0 else float("nan")
    return {"IoU": iou, "mIoU": miou, "fwIoU": fwiou, "aAcc": aacc}


@METRICS.register_module()
class TissueIoUMetric(IoUMetric):
    """``IoUMetric`` reporting ``mIoU``, ``fwIoU``, ``aAcc`` and ``IoU.<class>`` (percent)."""

    def compute_metrics(self, results: list) -> dict[str, float]:
        logger: MMLogger = MMLogger.get_current_instance()
        if self.format_only:
            logger.info(f"results are saved to {self.output_dir}")
            return OrderedDict()
        intersect, union, _, label = (sum(column) for column in zip(*results))
        scores = iou_scores(intersect.numpy(), union.numpy(), label.numpy())
        classes = self.dataset_meta["classes"]
        metrics: dict[str, float] = OrderedDict()
        for key in ("mIoU", "fwIoU", "aAcc"):
            metrics[key] = round(scores[key] * 100, 2)  # type: ignore[operator]
        rows = []
        for name, value in zip(classes, scores["IoU"]):  # type: ignore[call-overload]
            metrics[f"IoU.{name}"] = round(float(value) * 100, 2)
            rows.append(f"{name:>16} {metrics[f'IoU.{name}']:7.2f}")
        print_log("per class IoU (%):\n" + "\n".join(rows), logger=logger)
        return metrics

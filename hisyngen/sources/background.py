"""White-background detection for H&E patches.

A pixel is background when its grayscale value is above ``threshold``; white blobs smaller than
``min_size`` pixels (4-connectivity) are dropped, because small bright spots inside tissue (lumina,
fat droplets, tears) are tissue context rather than slide background.

Defaults ``threshold=220, min_size=250`` are the reference's synthesis settings at 224x224
(docs/method.md, Sources and single-tissue pools). One detector with these defaults serves every strategy and policy in hisyngen.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class BackgroundParams:
    """Parameters of :func:`background_mask`; part of every cache key and corpus config."""

    threshold: int = 220
    min_size: int = 250

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 255:
            raise ValueError(f"background threshold {self.threshold} must be in 0..255")
        if self.min_size < 0:
            raise ValueError(f"background min_size {self.min_size} must be >= 0")


def background_mask(image: np.ndarray, params: BackgroundParams = BackgroundParams()) -> np.ndarray:
    """Boolean (H, W) mask of white slide background in an RGB uint8 image."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    white = (gray > params.threshold).astype(np.uint8)
    if params.min_size <= 1 or not white.any():
        return white.astype(bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(white, connectivity=4)
    keep = stats[:, cv2.CC_STAT_AREA] >= params.min_size
    keep[0] = False  # label 0 is the non-white region
    return keep[labels]

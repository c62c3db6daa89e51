"""The paper's ablation baselines (Table VII) that are not Mosaic variants: OneLabel and CutMix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from hisyngen.synthesis.base import Pool, Sample, Strategy, draw_source, resized, source_mask
from hisyngen.synthesis.paired import PairedStrategy
from hisyngen.synthesis.registry import register


@dataclass(frozen=True)
class OneLabel(Strategy):
    """A single-tissue image as it is (resized to the output size when it differs)."""

    name: ClassVar[str] = "onelabel"

    def generate(self, pool: Pool, rng: np.random.Generator) -> Sample:
        entry = draw_source(self, pool, rng)
        image = resized(pool.image(entry), self.size, cv2.INTER_CUBIC)
        mask = resized(source_mask(pool, entry, self.background_policy), self.size, cv2.INTER_NEAREST)
        return Sample(np.ascontiguousarray(image), np.ascontiguousarray(mask), [entry], {})


@dataclass(frozen=True)
class CutMix(PairedStrategy):
    """A rectangle of one tissue pasted on another (CutMix: area 1 - lambda, lambda ~ U(0, 1)).

    The rectangle keeps the image's aspect ratio and lies fully inside it; ``pairs``, ``stain``,
    ``feather`` and ``seam_ignore`` as for Bezier (:class:`~hisyngen.synthesis.paired.PairedStrategy`).
    """

    name: ClassVar[str] = "cutmix"
    pairs: tuple[tuple[int, int], ...] | None = None

    def region(self, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        side = max(1, round(self.size * float(np.sqrt(1.0 - rng.random()))))
        y, x = int(rng.integers(self.size - side + 1)), int(rng.integers(self.size - side + 1))
        inside = np.zeros((self.size, self.size), bool)
        inside[y:y + side, x:x + side] = True
        return inside, {"box": [y, x, side, side]}


register(OneLabel)
register(CutMix)

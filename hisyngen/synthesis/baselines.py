"""The paper's ablation baselines (Table VII) that are not Mosaic variants: OneLabel and CutMix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from hisyngen.synthesis.base import (MixingStrategy, Pool, Sample, Strategy, class_pairs, draw_pair, draw_source,
                                     resized, source_mask)
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
class CutMix(MixingStrategy):
    """A rectangle of one tissue pasted on another (CutMix: area 1 - lambda, lambda ~ U(0, 1)).

    The rectangle keeps the image's aspect ratio and lies fully inside it; ``pairs`` restricts the
    (pasted, base) class pairs as for Bezier; ``stain``, ``feather`` and ``seam_ignore`` as for
    Bezier (reference: the base image).
    """

    name: ClassVar[str] = "cutmix"
    min_classes: ClassVar[int] = 2
    pairs: tuple[tuple[int, int], ...] | None = None

    def check_pool(self, pool: Pool, classes: tuple[str, ...]) -> None:
        super().check_pool(pool, classes)
        class_pairs(self.pairs, pool, self.name)

    def generate(self, pool: Pool, rng: np.random.Generator) -> Sample:
        fg_class, bg_class, fg, bg = draw_pair(self, self.pairs, pool, rng)
        side = max(1, round(self.size * float(np.sqrt(1.0 - rng.random()))))
        y, x = int(rng.integers(self.size - side + 1)), int(rng.integers(self.size - side + 1))
        image = resized(pool.image(bg), self.size, cv2.INTER_CUBIC).copy()
        mask = resized(source_mask(pool, bg, self.background_policy), self.size, cv2.INTER_NEAREST).copy()
        box = (slice(y, y + side), slice(x, x + side))
        fg_image = resized(pool.image(fg), self.size, cv2.INTER_CUBIC)
        mask[box] = resized(source_mask(pool, fg, self.background_policy), self.size, cv2.INTER_NEAREST)[box]
        if self.plain:
            image[box] = fg_image[box]
        else:
            inside = np.zeros((self.size, self.size), bool)
            inside[box] = True
            image = self.paste_inside(pool, inside, fg, bg, fg_image, image, mask)
        return Sample(image, mask, [fg, bg], {"pair": [int(fg_class), int(bg_class)], "box": [y, x, side, side]})


register(OneLabel)
register(CutMix)

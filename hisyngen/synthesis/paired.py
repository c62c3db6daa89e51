"""Base of the two-tissue strategies (Bezier, CutMix): one region of one class pasted on another.

A sample draws, in this order, a (foreground, background) class pair and a source of each
(:func:`~hisyngen.synthesis.base.draw_pair`), then the region (:meth:`PairedStrategy.region`).
The mask is the foreground source's mask inside the region and the background's outside; the
image likewise, through :meth:`~hisyngen.synthesis.base.MixingStrategy.paste_inside` when a stain,
feather or seam option is set (reference: the background image).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import numpy as np

from hisyngen.synthesis.base import MixingStrategy, Pool, Sample, blend, class_pairs, draw_pair, resized, source_mask


@dataclass(frozen=True)
class PairedStrategy(MixingStrategy):
    """A region of one tissue pasted on another; subclasses draw the region.

    Each subclass declares the field ``pairs: tuple[tuple[int, int], ...] | None = None`` itself,
    after its own fields: the (foreground, background) class pairs to draw from (default: every
    ordered pair of distinct classes with sources, uniformly). Declared here, dataclass order
    would put it before the subclass's fields and change the order of ``params()``, which is the
    identity written into existing corpora and discriminators.
    """

    min_classes: ClassVar[int] = 2
    if TYPE_CHECKING:  # a field of every subclass (see above), not of this class
        pairs: tuple[tuple[int, int], ...] | None

    def check_pool(self, pool: Pool, classes: tuple[str, ...]) -> None:
        super().check_pool(pool, classes)
        class_pairs(self.pairs, pool, self.name)

    def region(self, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:  # pragma: no cover - abstract
        """The pasted region, a (size, size) bool array, and its JSON-ready geometry."""
        raise NotImplementedError

    def generate(self, pool: Pool, rng: np.random.Generator) -> Sample:
        fg_class, bg_class, fg, bg = draw_pair(self, self.pairs, pool, rng)
        inside, geometry = self.region(rng)
        fg_image = resized(pool.image(fg), self.size, cv2.INTER_CUBIC)
        bg_image = resized(pool.image(bg), self.size, cv2.INTER_CUBIC)
        fg_mask = resized(source_mask(pool, fg, self.background_policy), self.size, cv2.INTER_NEAREST)
        bg_mask = resized(source_mask(pool, bg, self.background_policy), self.size, cv2.INTER_NEAREST)
        mask = blend(inside, fg_mask, bg_mask)
        if self.plain:
            image = blend(inside, fg_image, bg_image)
        else:
            image = self.paste_inside(pool, inside, fg, bg, fg_image, bg_image, mask)
        return Sample(image, mask, [fg, bg], {"pair": [int(fg_class), int(bg_class)], **geometry})

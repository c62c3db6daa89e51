"""An in-memory single-tissue pool whose every source has a unique flat colour (traceable pixels)."""

from __future__ import annotations

import numpy as np


class MemoryPool:
    """Implements hisyngen.synthesis.base.Pool over arrays built in the test."""

    def __init__(self, images: list[np.ndarray], tissues: list[int], num_classes: int,
                 backgrounds: list[np.ndarray] | None = None) -> None:
        self.images = images
        self.tissues = tissues
        self.num_classes = num_classes
        self.backgrounds = backgrounds or [np.zeros(im.shape[:2], bool) for im in images]
        self.by_class = [np.array([i for i, t in enumerate(tissues) if t == c], np.int64) for c in range(num_classes)]

    def __len__(self) -> int:
        return len(self.images)

    def tissue(self, index: int) -> int:
        return self.tissues[index]

    def background_fraction(self, index: int) -> float:
        return float(self.backgrounds[index].mean())

    def image(self, index: int) -> np.ndarray:
        return self.images[index]

    def background(self, index: int) -> np.ndarray:
        return self.backgrounds[index]


def source_colour(index: int) -> tuple[int, int, int]:
    """A distinct, exactly representable colour per source index (never white)."""
    return (20 + (index * 37) % 200, 20 + (index * 73) % 200, 20 + (index // 5) * 9 % 200)


def flat_pool(per_class: list[int], size: tuple[int, int] = (64, 64), white_corner: int = 0,
              colour_by: str = "source") -> MemoryPool:
    """``per_class[c]`` flat-coloured sources of class c; optionally a white top-left square.

    ``colour_by="source"`` gives every source its own colour (``source_colour(i)``); ``"class"``
    gives all sources of class c the colour ``source_colour(c)``, so seams between same-class
    tiles are invisible.
    """
    images, tissues, backgrounds = [], [], []
    for c, n in enumerate(per_class):
        for _ in range(n):
            image = np.empty((*size, 3), np.uint8)
            image[:] = source_colour(len(images) if colour_by == "source" else c)
            background = np.zeros(size, bool)
            if white_corner:
                image[:white_corner, :white_corner] = 255
                background[:white_corner, :white_corner] = True
            images.append(image)
            tissues.append(c)
            backgrounds.append(background)
    return MemoryPool(images, tissues, len(per_class), backgrounds)

"""Mosaic (docs/method.md, Mosaic) and its ablation relatives Gridded and Mosaic-without-splicing.

Mosaic: four *gridded* images (an m x m grid of random crops from random single-tissue images) are
each flipped, shift-scale-rotated and cropped to one quadrant around a random anchor, then pasted.
Flip, shift-scale-rotate and the quadrant crop are folded into ONE affine warp whose output is the
quadrant itself: the same geometry as transforming the whole gridded image and cropping it, at a
quarter of the cost. Images use bilinear interpolation, masks nearest, borders reflect-101.

Past ~350 lines as one concern: the three strategies are one sampling procedure at three depths
(grid; grid + warp; grid + warp + splice), so the gridded image and the warp stay beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import math

import cv2
import numpy as np

from hisyngen.spec import IGNORE_INDEX
from hisyngen.synthesis.base import MixingStrategy, Pool, Sample, StainReference, Strategy, draw_entry, pad_reflect
from hisyngen.synthesis.seams import blend_grid, extension, grid_band, reflect_window
from hisyngen.synthesis.stain import transfer
from hisyngen.synthesis.registry import register

FLIPS = ("none", "horizontal", "vertical", "both")


def grid_edges(size: int, cells: int) -> list[int]:
    """Cell boundaries of an m-cell split of ``size`` (equal cells when it divides evenly)."""
    return [round(k * size / cells) for k in range(cells + 1)]


def mask_table(tissue: int, policy: str) -> np.ndarray:
    """A 256-entry lookup turning a 0/1 background tile into its mask (cv2.LUT: 2x faster than arithmetic)."""
    key = (tissue, policy)
    table = _MASK_TABLES.get(key)
    if table is None:
        table = np.full(256, tissue, np.uint8)
        if policy == "ignore":
            table[1] = IGNORE_INDEX
        _MASK_TABLES[key] = table
    return table


_MASK_TABLES: dict[tuple[int, str], np.ndarray] = {}


def _draw_window(rng: np.random.Generator, pool: Pool, entry: int, height: int, width: int,
                 u: tuple[float, float]) -> tuple[int, int]:
    """Top-left corner of a (height, width) crop of ``entry`` from two uniform numbers."""
    source_h, source_w = pool.image(entry).shape[:2]
    return int(u[0] * (max(source_h - height, 0) + 1)), int(u[1] * (max(source_w - width, 0) + 1))


def gridded_image(strategy: Strategy, pool: Pool, rng: np.random.Generator, size: int, cells: int,
                  reference: StainReference | None = None) -> tuple[np.ndarray, np.ndarray, list[int], list[list[int]]]:
    """An m x m grid of random crops: (image, mask, entries, [[y, x] of each crop]).

    Every tile's source and crop are drawn in one call; a tile whose background fraction exceeds
    ``strategy.max_background`` is redrawn (bounded; the least-background draw wins when every
    try fails). A :class:`~hisyngen.synthesis.base.MixingStrategy` with options maps each tile's
    stain toward ``reference`` (set by the first tile with statistics when empty), feathers the
    tile seams and marks their band ignored (:func:`render_grid`); the draws are the same either way.
    """
    if isinstance(strategy, MixingStrategy) and not strategy.plain:
        tiles, mask, chosen, corners = draw_grid(strategy, pool, rng, size, cells, render=False)
        return render_grid(strategy, pool, tiles, size, cells, reference), mask, chosen, corners
    return draw_grid(strategy, pool, rng, size, cells, render=True)  # type: ignore[return-value]


Tile = tuple[int, int, int, int, int]
"""A drawn grid tile: (entry, y, x, row, col) - the crop's corner in its source and its cell."""


def draw_grid(strategy: Strategy, pool: Pool, rng: np.random.Generator, size: int, cells: int, render: bool
              ) -> tuple[np.ndarray | list[Tile], np.ndarray, list[int], list[list[int]]]:
    """The draws of :func:`gridded_image` and its mask; with ``render`` its hard-cut image, else the
    tiles for :func:`render_grid` (a MixingStrategy's ``seam_ignore`` band is marked in the mask)."""
    tiles: list[Tile] = []
    edges = grid_edges(size, cells)
    cells_yx = [(r, c) for r in range(cells) for c in range(cells)]
    entries = rng.integers(len(pool), size=len(cells_yx))
    uniforms = rng.random((len(cells_yx), 2))
    image = np.empty((size, size, 3), np.uint8)
    mask = np.empty((size, size), np.uint8)
    chosen, corners = [], []
    for k, (row, col) in enumerate(cells_yx):
        y0, y1, x0, x1 = edges[row], edges[row + 1], edges[col], edges[col + 1]
        height, width = y1 - y0, x1 - x0
        entry = int(entries[k])
        y, x = _draw_window(rng, pool, entry, height, width, (uniforms[k, 0], uniforms[k, 1]))
        background = pool.background(entry)[y : y + height, x : x + width]
        fraction = np.count_nonzero(background) / background.size if background.size else 0.0
        if fraction > strategy.max_background:
            best = (fraction, entry, y, x)
            for _ in range(strategy.max_redraws):
                entry = draw_entry(pool, rng)
                y, x = _draw_window(rng, pool, entry, height, width, (rng.random(), rng.random()))
                background = pool.background(entry)[y : y + height, x : x + width]
                fraction = np.count_nonzero(background) / background.size if background.size else 0.0
                if fraction < best[0]:
                    best = (fraction, entry, y, x)
                if fraction <= strategy.max_background:
                    break
            _, entry, y, x = best
            background = pool.background(entry)[y : y + height, x : x + width]
        crop = pool.image(entry)[y : y + height, x : x + width]
        table = mask_table(pool.tissue(entry), strategy.background_policy)
        if crop.shape[:2] == (height, width):
            cv2.LUT(background.view(np.uint8), table, dst=mask[y0:y1, x0:x1])
        else:  # a source smaller than the cell: pad with reflect-101
            crop = pad_reflect(crop, height, width)
            mask[y0:y1, x0:x1] = pad_reflect(table[background.view(np.uint8)], height, width)
        if render:
            image[y0:y1, x0:x1] = crop
        else:
            tiles.append((entry, y, x, row, col))
        chosen.append(entry)
        corners.append([y, x])
    if not render:
        if getattr(strategy, "seam_ignore", 0):
            mask[grid_band(size, size, edges, edges, strategy.seam_ignore)] = IGNORE_INDEX  # type: ignore[attr-defined]
        return tiles, mask, chosen, corners
    return image, mask, chosen, corners


def render_grid(strategy: MixingStrategy, pool: Pool, tiles: list[Tile], size: int, cells: int,
                reference: StainReference | None, region: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The image of drawn ``tiles``: each crop grown by ``strategy.feather`` into its neighbours
    (reflect-101 beyond its source, as the padding of small sources), stain-matched toward
    ``reference`` (the first tile with statistics sets it and stays as it is), seams cross-faded.

    Only the pixels inside ``region`` (y0, y1, x0, x1 of the grid; default all) are computed, the
    rest left uninitialised: a Mosaic quadrant reads a fraction of its gridded image, and the colour
    transfer and the cross-fades would otherwise cost more than everything else.
    """
    edges = grid_edges(size, cells)
    layers: list[list[np.ndarray]] = [[] for _ in range(cells)]
    for entry, y, x, row, col in tiles:
        top, bottom = extension(strategy.feather, row, cells)
        left, right = extension(strategy.feather, col, cells)
        height = edges[row + 1] - edges[row] + top + bottom
        width = edges[col + 1] - edges[col] + left + right
        grown = (y - top, x - left, height, width)
        tile = reflect_window(pool.image(entry), *grown)
        if strategy.stain != "none" and reference is not None:
            if reference.stats is None:
                reference.stats = strategy.stain_stats(pool, entry)
            else:
                gy, gx = edges[row] - top, edges[col] - left  # the layer's corner in the grid
                ry0, ry1, rx0, rx1 = region or (0, size, 0, size)
                window = (slice(max(ry0 - gy, 0), max(min(ry1 - gy, height), 0)),
                          slice(max(rx0 - gx, 0), max(min(rx1 - gx, width), 0)))
                if window[0].stop > window[0].start and window[1].stop > window[1].start:
                    stats = strategy.stain_stats(pool, entry)
                    if stats is not None:
                        background = reflect_window(pool.background(entry), *grown)
                        # blend_grid reads no layer pixel outside the region: leave the rest unset
                        # (copying the whole tile first cost as much as its transfer)
                        layer = np.empty_like(tile)
                        layer[window] = transfer(tile[window], background[window], stats, reference.stats)
                        tile = layer
        layers[row].append(tile)
    return blend_grid(layers, edges, edges, strategy.feather, region)


def source_region(matrix: np.ndarray, width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the pixels of a size x size image that ``cv2.warpAffine(image, matrix,
    (width, height), INTER_LINEAR, BORDER_REFLECT_101)`` reads, with a margin for the bilinear
    neighbours and reflections folded back in."""
    (a, b, c), (d, e, f) = matrix.tolist()  # plain floats: numpy costs more than this arithmetic
    det = a * e - b * d
    xs, ys = [], []
    for u, v in ((0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)):
        du, dv = u - c, v - f
        xs.append((e * du - b * dv) / det)
        ys.append((a * dv - d * du) / det)
    x0, x1 = _folded(math.floor(min(xs)) - 1, math.ceil(max(xs)) + 2, size)
    y0, y1 = _folded(math.floor(min(ys)) - 1, math.ceil(max(ys)) + 2, size)
    return y0, y1, x0, x1


def _folded(low: int, high: int, size: int) -> tuple[int, int]:
    """The indices in [0, size) that reflect-101 reads for indices low..high-1."""
    if low < -(size - 2) or high > 2 * size - 1:  # more than one reflection: everything
        return 0, size
    start, stop = max(low, 0), min(high, size)
    if low < 0:
        stop = max(stop, min(size, 1 - low))
    if high > size:
        start = min(start, max(0, 2 * size - 1 - high))
    return start, stop


def affine_matrix(size: int, flip: str, angle: float, scale: float, shift: tuple[float, float],
                  crop: tuple[int, int]) -> np.ndarray:
    """2x3 matrix mapping the gridded image to the quadrant: flip, then shift-scale-rotate about
    the centre (as cv2.getRotationMatrix2D), then the crop offset. Plain floats: numpy products of
    3x3 matrices cost more than the warp of a small quadrant."""
    last = size - 1.0
    centre = last / 2.0
    fx, tx = (-1.0, last) if flip in ("horizontal", "both") else (1.0, 0.0)
    fy, ty = (-1.0, last) if flip in ("vertical", "both") else (1.0, 0.0)
    theta = math.radians(angle)
    a, b = scale * math.cos(theta), scale * math.sin(theta)
    # rotation/scale about the centre, plus the shift
    r0 = (1 - a) * centre - b * centre + shift[0] * size
    r1 = b * centre + (1 - a) * centre + shift[1] * size
    # compose with the flip (x -> fx*x + tx, y -> fy*y + ty) and subtract the crop corner
    return np.array([[a * fx, b * fy, a * tx + b * ty + r0 - crop[1]],
                     [-b * fx, a * fy, -b * tx + a * ty + r1 - crop[0]]])


@dataclass(frozen=True)
class Mosaic(MixingStrategy):
    """Four transformed gridded images pasted as quadrants around a random anchor (hard seams by default).

    ``grid`` is m (cells per side of a gridded image); ``anchor`` the range of the anchor as a
    fraction of the size (rounded to even pixels); ``flip_p`` / ``ssr_p`` the probabilities of a
    flip (horizontal, vertical or both) and of a shift-scale-rotate with the given limits.
    ``stain``, ``feather`` and ``seam_ignore`` (:class:`~hisyngen.synthesis.base.MixingStrategy`)
    apply to the tile seams of every gridded image and to the quadrant seams; the stain reference
    is the first tile of the first quadrant.
    """

    name: ClassVar[str] = "mosaic"
    grid: int = 2
    anchor: tuple[float, float] = (0.2, 0.8)
    flip_p: float = 0.8
    ssr_p: float = 0.8
    shift: float = 0.0625
    scale: tuple[float, float] = (0.8, 1.2)
    rotate: float = 45.0

    def problems(self) -> list[str]:
        out = super().problems()
        if not isinstance(self.grid, int) or self.grid < 1:
            out.append(f"grid must be a positive integer, got {self.grid!r}")
        elif isinstance(self.size, int) and self.size < 2 * self.grid:
            out.append(f"size {self.size} is too small for a {self.grid}x{self.grid} grid in each quadrant")
        lo, hi = self.anchor
        if not 0.0 < lo < hi < 1.0:
            out.append(f"anchor range must satisfy 0 < low < high < 1, got {list(self.anchor)}")
        for name in ("flip_p", "ssr_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                out.append(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.shift < 1.0:
            out.append(f"shift must be in [0, 1), got {self.shift}")
        if not 0.0 < self.scale[0] <= self.scale[1]:
            out.append(f"scale range must satisfy 0 < low <= high, got {list(self.scale)}")
        if not 0.0 <= self.rotate <= 180.0:
            out.append(f"rotate must be in [0, 180] degrees, got {self.rotate}")
        return out

    def draw_anchor(self, rng: np.random.Generator) -> tuple[int, int]:
        """(h, w) anchor in pixels: uniform in [low, high) x size, rounded to even, kept inside."""
        values = []
        for _ in range(2):
            value = 2 * round(rng.uniform(*self.anchor) * self.size / 2)
            values.append(int(min(max(value, 1), self.size - 1)))
        return values[0], values[1]

    def generate(self, pool: Pool, rng: np.random.Generator) -> Sample:
        size = self.size
        ah, aw = self.draw_anchor(rng)
        image = np.empty((size, size, 3), np.uint8)
        mask = np.empty((size, size), np.uint8)
        sources: list[int] = []
        quadrants: list[dict[str, Any]] = []
        boxes = ((0, ah, 0, aw), (0, ah, aw, size), (ah, size, 0, aw), (ah, size, aw, size))
        reference = StainReference() if self.stain != "none" else None
        layers: list[list[np.ndarray]] = [[], []]
        for q, (y0, y1, x0, x1) in enumerate(boxes):
            if self.plain:
                grid_image, grid_mask, entries, corners = gridded_image(self, pool, rng, size, self.grid)
            else:
                tiles, grid_mask, entries, corners = draw_grid(self, pool, rng, size, self.grid, render=False)
            qh, qw = y1 - y0, x1 - x0
            flip = FLIPS[1 + int(rng.integers(3))] if rng.random() < self.flip_p else "none"
            if rng.random() < self.ssr_p:
                angle = float(rng.uniform(-self.rotate, self.rotate))
                scale = float(rng.uniform(*self.scale))
                shift = (float(rng.uniform(-self.shift, self.shift)), float(rng.uniform(-self.shift, self.shift)))
            else:
                angle, scale, shift = 0.0, 1.0, (0.0, 0.0)
            crop = (int(rng.integers(size - qh + 1)), int(rng.integers(size - qw + 1)))
            if not self.plain:
                # The quadrant, grown across its inner sides by feather pixels: one warp whose core
                # is the quadrant (up to OpenCV's fixed-point rounding, 1 level on ~0.05% of values).
                top, bottom = extension(self.feather, q // 2, 2)
                left, right = extension(self.feather, q % 2, 2)
                grown_matrix = affine_matrix(size, flip, angle, scale, shift, crop)
                grown_matrix[0, 2] += left
                grown_matrix[1, 2] += top
                grown_size = (qw + left + right, qh + top + bottom)
                region = source_region(grown_matrix, *grown_size, size)
                grid_image = render_grid(self, pool, tiles, size, self.grid, reference, region)
            if angle == 0.0 and scale == 1.0 and shift == (0.0, 0.0):
                # Pure flips and crops are exact pixel copies: slicing is cheaper than a warp.
                flipped_image, flipped_mask = _flip(grid_image, flip), _flip(grid_mask, flip)
                window = (slice(crop[0], crop[0] + qh), slice(crop[1], crop[1] + qw))
                if not self.feather:
                    image[y0:y1, x0:x1] = flipped_image[window]
                mask[y0:y1, x0:x1] = flipped_mask[window]
            else:
                matrix = affine_matrix(size, flip, angle, scale, shift, crop)
                if not self.feather:
                    image[y0:y1, x0:x1] = cv2.warpAffine(grid_image, matrix, (qw, qh), flags=cv2.INTER_LINEAR,
                                                         borderMode=cv2.BORDER_REFLECT_101)
                mask[y0:y1, x0:x1] = cv2.warpAffine(grid_mask, matrix, (qw, qh), flags=cv2.INTER_NEAREST,
                                                    borderMode=cv2.BORDER_REFLECT_101)
            if self.feather and angle == 0.0 and scale == 1.0 and shift == (0.0, 0.0):
                # the grown quadrant of a pure flip: the reflect-101 window the warp would copy
                layers[q // 2].append(reflect_window(flipped_image, crop[0] - top, crop[1] - left, grown_size[1],
                                                     grown_size[0]))
            elif self.feather:
                layers[q // 2].append(cv2.warpAffine(grid_image, grown_matrix, grown_size, flags=cv2.INTER_LINEAR,
                                                     borderMode=cv2.BORDER_REFLECT_101))
            sources.extend(entries)
            quadrants.append({"tiles": corners, "flip": flip, "angle": round(angle, 4), "scale": round(scale, 5),
                              "shift": [round(s, 5) for s in shift], "crop": list(crop)})
        if self.feather:
            image = blend_grid(layers, (0, ah, size), (0, aw, size), self.feather)
        if self.seam_ignore:
            mask[grid_band(size, size, (0, ah, size), (0, aw, size), self.seam_ignore)] = IGNORE_INDEX
        return Sample(image, mask, sources, {"anchor": [ah, aw], "quadrants": quadrants})

def _flip(array: np.ndarray, flip: str) -> np.ndarray:
    if flip == "horizontal":
        return array[:, ::-1]
    if flip == "vertical":
        return array[::-1]
    if flip == "both":
        return array[::-1, ::-1]
    return array


@dataclass(frozen=True)
class MosaicNoSplice(Mosaic):
    """Mosaic whose four inputs are single images instead of grids (paper Table VII ablation)."""

    name: ClassVar[str] = "mosaic-nosplice"
    grid: int = 1

    def problems(self) -> list[str]:
        out = super().problems()
        if self.grid != 1:
            out.append(f"grid is 1 for mosaic-nosplice (single images, no grids); use mosaic for grid {self.grid}")
        return out


@dataclass(frozen=True)
class Gridded(MixingStrategy):
    """Step (a) of Mosaic alone: an m x m grid of random crops of random single-tissue images.

    ``stain``, ``feather`` and ``seam_ignore`` as for Mosaic (reference: the first tile).
    """

    name: ClassVar[str] = "gridded"
    grid: int = 2

    def problems(self) -> list[str]:
        out = super().problems()
        if not isinstance(self.grid, int) or self.grid < 1:
            out.append(f"grid must be a positive integer, got {self.grid!r}")
        elif isinstance(self.size, int) and self.size < self.grid:
            out.append(f"size {self.size} is smaller than the grid {self.grid}")
        return out

    def generate(self, pool: Pool, rng: np.random.Generator) -> Sample:
        reference = StainReference() if self.stain != "none" else None
        image, mask, entries, corners = gridded_image(self, pool, rng, self.size, self.grid, reference)
        return Sample(image, mask, entries, {"tiles": corners})


register(Mosaic)
register(MosaicNoSplice)
register(Gridded)

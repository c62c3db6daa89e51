"""Feathered seams: cross-fade the content of two regions over a few pixels around their border.

Distances are Chebyshev (the larger of the two axis offsets): a pixel is within ``px`` of a seam
when its (2 px + 1)^2 window holds a pixel of another region. For a pixel ``d`` pixels from the
other region across a straight seam (``d = 1`` next to it), its own region weighs
``(px + d) / (2 px + 1)`` and the other the rest; that is the fraction of its window on its own
side, so

* only pixels within ``px`` of a seam change, the others keep their region's pixel exactly;
* a pixel's own region weighs more than 0.5 (at least (px + 1) / (2 px + 1) on a straight seam):
  the hard-cut mask is the mask of the dominant region, whatever ``px``.

Grids (Gridded tiles, Mosaic quadrants) weigh a cell by the product of its two axes' weights;
free-form regions (a Bezier blob, a CutMix box) by the fraction of the pixel's window inside them
(a box filter of the region: the same products on a rectangle). Where a blob's tip holds less of
the window than the outside, its weight is raised to just over 0.5, so the label still dominates.
``seam_ignore = q`` marks the pixels within ``q`` of a seam, on both sides.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

MAX_SEAM_PX = 32
"""Largest ``feather`` / ``seam_ignore``: beyond this a 224 px sample is more transition than tissue."""


def own_weight(signed: np.ndarray, px: int) -> np.ndarray:
    """The weight of a pixel's own region at signed distance ``signed`` = d - 0.5 (pixels) from a
    straight seam: (px + d) / (2 px + 1), clipped to [0, 1]."""
    return np.clip(0.5 + signed / (2.0 * px + 1.0), 0.0, 1.0).astype(np.float32)


def mix(first: np.ndarray, second: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``first + (second - first) * weight`` rounded to uint8 (``weight``: of ``second``, broadcast)."""
    a = first.astype(np.float32)
    out = second.astype(np.float32)
    out -= a  # in place: half the time of the same arithmetic in new arrays
    out *= weight
    out += a
    np.rint(out, out=out)
    return out.astype(np.uint8)


# --- free-form borders (Bezier blob, CutMix box) ---------------------------------------------

def border_window(inside: np.ndarray, reach: int) -> tuple[slice, slice] | None:
    """The window holding every pixel within ``reach`` of the border of ``inside`` (its bounding box
    grown by reach + 1, clipped), or None when ``inside`` is empty or full (no border)."""
    x, y, w, h = cv2.boundingRect(inside.view(np.uint8))
    if w == 0 or (w == inside.shape[1] and h == inside.shape[0] and inside.all()):
        return None
    grow = reach + 1
    return (slice(max(0, y - grow), min(inside.shape[0], y + h + grow)),
            slice(max(0, x - grow), min(inside.shape[1], x + w + grow)))


def window_counts(inside: np.ndarray, px: int) -> np.ndarray:
    """uint16: how many pixels of each pixel's (2 px + 1)^2 window are ``inside`` (beyond the array
    the edge pixels repeat, so an image edge is no seam)."""
    side = 2 * px + 1
    return cv2.boxFilter(np.ascontiguousarray(inside).view(np.uint8), cv2.CV_16U, (side, side), normalize=False,
                         borderType=cv2.BORDER_REPLICATE)


def seam_band(inside: np.ndarray, reach: int) -> np.ndarray:
    """Boolean: the pixels within ``reach`` of ``inside``'s border, on both sides."""
    band = np.zeros(inside.shape, bool)
    window = border_window(inside, reach)
    if window is not None:
        band[window] = _window_band(np.ascontiguousarray(inside[window]), reach)[1]
    return band


def _window_band(inside: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """(window counts, band) of a :func:`border_window` of ``inside``: beyond the window's sides
    inside the image there is nothing inside within reach + 1, so replicating them (all outside)
    counts what the whole image counts, at a fraction of the pixels."""
    counts = window_counts(inside, reach)
    return counts, (counts > 0) & (counts < (2 * reach + 1) ** 2)


def feather_inside(image: np.ndarray, inside: np.ndarray, foreground: np.ndarray, background: np.ndarray,
                   px: int) -> None:
    """Cross-fade the hard-cut ``image`` (``foreground`` where ``inside``, else ``background``; all
    C-contiguous, the same size) over ``px`` pixels on both sides of the border, in place.

    Works on the band's pixels alone, by flat index, found within :func:`border_window`:
    whole-image float arithmetic costs more than the rest of a Bezier sample."""
    window = border_window(inside, px)
    if window is None:
        return
    sub = np.ascontiguousarray(inside[window])
    counts, band = _window_band(sub, px)
    local = np.flatnonzero(band)
    if not len(local):
        return
    # flat index in the image: each window row starts (image width - window width) further on
    where = local + (local // sub.shape[1]) * (inside.shape[1] - sub.shape[1])
    where += window[0].start * inside.shape[1] + window[1].start
    key = np.take(counts, local).astype(np.intp)
    key += np.take(sub, local) * (len(_band_weights(px)) // 2)
    weight = np.take(_band_weights(px), key)
    first = np.take(_pixels(background), where).view(np.uint8).reshape(-1, 3)
    second = np.take(_pixels(foreground), where).view(np.uint8).reshape(-1, 3)
    np.put(_pixels(image), where, mix(first, second, weight[:, None]).view(_PIXEL).ravel())


@functools.lru_cache(maxsize=None)
def _band_weights(px: int) -> np.ndarray:
    """float32 weight of the inside region for a pixel whose window holds ``count`` inside pixels:
    entry ``count`` for a pixel outside, ``area + 1 + count`` for one inside (read-only)."""
    area = (2 * px + 1) ** 2
    weight = np.arange(area + 1).astype(np.float32) * np.float32(1.0 / area)
    # Strictly more than half for the pixel's own side, also at a tip that holds less of the window.
    dominant = np.float32(0.5 + 0.5 / area)
    table = np.concatenate([np.minimum(weight, 1 - dominant), np.maximum(weight, dominant)])
    table.flags.writeable = False
    return table


_PIXEL = np.dtype("V3")


def _pixels(image: np.ndarray) -> np.ndarray:
    """A C-contiguous RGB uint8 image as a flat array of 3-byte pixels (fancy indexing moves whole
    pixels at once: three times faster than indexing rows of an (N, 3) array)."""
    return image.reshape(-1, 3).view(_PIXEL).ravel()


# --- axis-aligned grids (Gridded tiles, Mosaic quadrants) ------------------------------------

def seam_reach(px: int, edges: list[int] | tuple[int, ...], k: int) -> int:
    """Blend width on each side of interior edge ``k``: ``px``, but at most half of each adjacent
    cell, so the bands of two edges never overlap."""
    return min(px, (edges[k] - edges[k - 1]) // 2, (edges[k + 1] - edges[k]) // 2)


@functools.lru_cache(maxsize=None)
def edge_weights(reach: int) -> np.ndarray:
    """Weights of the second region at the 2 x reach positions edge - reach .. edge + reach - 1
    (read-only: shared between calls)."""
    weights = own_weight(np.arange(-reach, reach, dtype=np.float32) + 0.5, reach)
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=None)
def _column_weights(reach: int, channels: tuple[int, ...]) -> np.ndarray:
    """:func:`edge_weights` as a (1, 2 x reach, *channels) array: repeated along the channels, the
    product of a band with its weights runs over contiguous memory (a broadcast channel axis made
    it the slowest step of a cross-fade)."""
    weights = np.ascontiguousarray(np.broadcast_to(edge_weights(reach).reshape((1, -1) + (1,) * len(channels)),
                                                   (1, 2 * reach) + channels))
    weights.flags.writeable = False
    return weights


def extension(px: int, k: int, cells: int) -> tuple[int, int]:
    """(before, after): how far a grid layer of cell ``k`` of ``cells`` reaches beyond its cell."""
    return (px if k > 0 else 0), (px if k < cells - 1 else 0)


def blend_grid(layers: list[list[np.ndarray]], ys: list[int] | tuple[int, ...], xs: list[int] | tuple[int, ...],
               px: int, region: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A grid of cells (rows split at ``ys``, columns at ``xs``) whose interior seams cross-fade over
    :func:`seam_reach` pixels. ``layers[r][c]`` is cell (r, c) grown by :func:`extension` on each
    axis: the content its source has beyond the cell. Weights are products of the two axes': each
    grid row is joined across its columns first (extension rows included), then the rows.

    With ``region`` (y0, y1, x0, x1) only those pixels are computed (the rest of the array is left
    uninitialised): what a Mosaic quadrant's warp reads of its gridded image.

    Every pixel is written once into the output (a row's join straight into its rows), except the
    rows of a seam between grid rows: there both rows' joins are made for those rows alone and
    cross-faded (joining whole rows first and then the rows copied every pixel twice).
    """
    rows, cols = len(layers), len(layers[0])
    ys, xs = list(ys), list(xs)
    y0, y1, x0, x1 = region or (0, ys[-1], 0, xs[-1])
    row_starts = [ys[r] - extension(px, r, rows)[0] for r in range(rows)]
    col_starts = [xs[c] - extension(px, c, cols)[0] for c in range(cols)]
    if rows == 1:  # no row extension: the layers' own rows
        y0, y1, ys = 0, layers[0][0].shape[0], [0, layers[0][0].shape[0]]
    out = np.empty((ys[-1], xs[-1]) + layers[0][0].shape[2:], np.uint8)
    if x1 <= x0:
        return out
    for r in range(rows):
        a, b = max(ys[r], y0), min(ys[r + 1], y1)
        if a < b:
            _join_row(layers[r], row_starts[r], a, b, col_starts, xs, px, x0, x1, out[a:b, x0:x1])
    for k in range(1, rows):
        reach = seam_reach(px, ys, k)
        a, b = max(ys[k] - reach, y0), min(ys[k] + reach, y1)
        if reach > 0 and a < b:
            band = (b - a, x1 - x0) + out.shape[2:]
            above, below = np.empty(band, np.uint8), np.empty(band, np.uint8)
            _join_row(layers[k - 1], row_starts[k - 1], a, b, col_starts, xs, px, x0, x1, above)
            _join_row(layers[k], row_starts[k], a, b, col_starts, xs, px, x0, x1, below)
            first = ys[k] - reach
            weight = edge_weights(reach)[a - first : b - first].reshape((-1,) + (1,) * (out.ndim - 1))
            out[a:b, x0:x1] = mix(above, below, weight)
    return out


def _join_row(parts: list[np.ndarray], row_start: int, a: int, b: int, col_starts: list[int], xs: list[int],
              px: int, x0: int, x1: int, dst: np.ndarray) -> None:
    """Grid rows ``a``..``b`` of one grid row's layers (``parts[c]`` begins at grid row ``row_start``
    and column ``col_starts[c]``) joined across the columns ``x0``..``x1``, seams cross-faded, into
    ``dst`` (its column 0 is grid column ``x0``)."""
    i, j = a - row_start, b - row_start
    for c, part in enumerate(parts):
        lo, hi = max(xs[c], x0), min(xs[c + 1], x1)
        if lo < hi:
            dst[:, lo - x0 : hi - x0] = part[i:j, lo - col_starts[c] : hi - col_starts[c]]
    for c in range(1, len(parts)):
        reach = seam_reach(px, xs, c)
        lo, hi = max(xs[c] - reach, x0), min(xs[c] + reach, x1)
        if reach > 0 and lo < hi:
            first = xs[c] - reach
            weight = _column_weights(reach, dst.shape[2:])[:, lo - first : hi - first]
            dst[:, lo - x0 : hi - x0] = mix(parts[c - 1][i:j, lo - col_starts[c - 1] : hi - col_starts[c - 1]],
                                            parts[c][i:j, lo - col_starts[c] : hi - col_starts[c]], weight)


def grid_band(height: int, width: int, ys: list[int] | tuple[int, ...], xs: list[int] | tuple[int, ...],
              reach: int) -> np.ndarray:
    """Boolean (height, width): pixels within ``reach`` of an interior seam of the grid."""
    band = np.zeros((height, width), bool)
    for edge in ys[1:-1]:
        band[max(0, edge - reach) : edge + reach] = True
    for edge in xs[1:-1]:
        band[:, max(0, edge - reach) : edge + reach] = True
    return band


def reflect_window(array: np.ndarray, y: int, x: int, height: int, width: int) -> np.ndarray:
    """``array[y:y+height, x:x+width]`` where indices outside the array reflect (reflect-101, repeated
    for windows larger than the array: what :func:`~hisyngen.synthesis.base.pad_reflect` pads)."""
    rows, cols = array.shape[:2]
    if y >= 0 and x >= 0 and y + height <= rows and x + width <= cols:
        return array[y : y + height, x : x + width]
    ya, yb, xa, xb = max(y, 0), min(y + height, rows), max(x, 0), min(x + width, cols)
    top, bottom, left, right = ya - y, y + height - yb, xa - x, x + width - xb
    if max(top, bottom) < yb - ya and max(left, right) < xb - xa:
        # one reflection on each side, from inside the window: what cv2.copyMakeBorder pads (30x
        # faster than indexing); bool arrays travel as uint8
        inner = np.ascontiguousarray(array[ya:yb, xa:xb])
        padded = cv2.copyMakeBorder(inner.view(np.uint8) if inner.dtype == bool else inner,
                                    top, bottom, left, right, cv2.BORDER_REFLECT_101)
        return padded.view(bool) if inner.dtype == bool else padded
    return array[_reflect_101(np.arange(y, y + height), rows)][:, _reflect_101(np.arange(x, x + width), cols)]


def _reflect_101(index: np.ndarray, length: int) -> np.ndarray:
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    index = np.mod(index, period)
    return np.where(index >= length, period - index, index)

"""Feathered seams: cross-fade the content of two regions over a few pixels around their border.

A pixel at distance ``d`` from the nearest pixel of the other region (pixel centres) lies at
``s = d - 0.5`` from the border, on its own region's side. Its own region weighs
``clip(0.5 + s / (2 px), 0, 1)`` and the other the rest, so

* only pixels with ``d < px + 0.5`` change (distance rounded: at most ``px``) and the rest keep
  their region's pixel exactly;
* a pixel's own region always weighs more than 0.5: the hard-cut mask *is* the mask of the
  dominant region, whatever ``px``. (On a grid, weights are products of the two axes', so within
  ``px`` of a corner where four regions meet the hard-cut region weighs the most without
  exceeding 0.5.)

Distances are Euclidean for axis-aligned seams (grids, quadrants, boxes) and OpenCV's 5x5 chamfer
distance for free-form ones (within 2% of Euclidean, exact along the axes; the precise transform
costs four times more). ``seam_ignore`` bands use the same distances: ``d < q + 0.5`` on both sides.
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_SEAM_PX = 32
"""Largest ``feather`` / ``seam_ignore``: beyond this a 224 px sample is more transition than tissue."""


def own_weight(signed: np.ndarray, px: int) -> np.ndarray:
    """The weight of a pixel's own region at signed distance ``signed`` (pixels) from the border."""
    return np.clip(0.5 + signed / (2.0 * px), 0.0, 1.0).astype(np.float32)


def mix(first: np.ndarray, second: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``first + (second - first) * weight`` rounded to uint8 (``weight``: of ``second``, broadcast)."""
    a = first.astype(np.float32)
    return np.rint(a + (second.astype(np.float32) - a) * weight).astype(np.uint8)


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


def border_distance(inside: np.ndarray) -> np.ndarray:
    """float32 distance of every pixel to the nearest pixel on the other side of ``inside``'s border."""
    flag = np.ascontiguousarray(inside).view(np.uint8)
    to_outside = cv2.distanceTransform(flag, cv2.DIST_L2, 5)
    to_inside = cv2.distanceTransform(1 - flag, cv2.DIST_L2, 5)
    return cv2.add(to_outside, to_inside)  # one of the two is 0 at every pixel


def feather_inside(image: np.ndarray, inside: np.ndarray, distance: np.ndarray, foreground: np.ndarray,
                   background: np.ndarray, px: int) -> None:
    """Cross-fade the hard-cut ``image`` (``foreground`` where ``inside``, else ``background``) over
    ``px`` pixels on both sides of the border, in place. All arrays cover the same window;
    ``distance`` is :func:`border_distance` of ``inside``."""
    where = np.nonzero(distance < px + 0.5)
    if not len(where[0]):
        return
    signed = distance[where] - 0.5
    weight_inside = own_weight(np.where(inside[where], signed, -signed), px)[:, None]
    image[where] = mix(background[where], foreground[where], weight_inside)


# --- axis-aligned grids (Gridded tiles, Mosaic quadrants) ------------------------------------

def seam_reach(px: int, edges: list[int] | tuple[int, ...], k: int) -> int:
    """Blend width on each side of interior edge ``k``: ``px``, but at most half of each adjacent
    cell, so the bands of two edges never overlap."""
    return min(px, (edges[k] - edges[k - 1]) // 2, (edges[k + 1] - edges[k]) // 2)


def edge_weights(reach: int) -> np.ndarray:
    """Weights of the second region at the 2 x reach positions edge - reach .. edge + reach - 1."""
    return own_weight(np.arange(-reach, reach, dtype=np.float32) + 0.5, reach)


def extension(px: int, k: int, cells: int) -> tuple[int, int]:
    """(before, after): how far a grid layer of cell ``k`` of ``cells`` reaches beyond its cell."""
    return (px if k > 0 else 0), (px if k < cells - 1 else 0)


def blend_grid(layers: list[list[np.ndarray]], ys: list[int] | tuple[int, ...], xs: list[int] | tuple[int, ...],
               px: int) -> np.ndarray:
    """A grid of cells (rows split at ``ys``, columns at ``xs``) whose interior seams cross-fade over
    :func:`seam_reach` pixels. ``layers[r][c]`` is cell (r, c) grown by :func:`extension` on each
    axis: the content its source has beyond the cell. Weights are products of the two axes'."""
    rows = len(layers)
    out = np.empty((ys[-1], xs[-1], *layers[0][0].shape[2:]), np.uint8)
    starts = [ys[r] - extension(px, r, rows)[0] for r in range(rows)]

    def joined_rows(r: int, lo: int, hi: int, into: np.ndarray | None = None) -> np.ndarray:
        """Rows lo..hi of grid row r, its columns already cross-faded."""
        return _join([layer[lo - starts[r] : hi - starts[r]] for layer in layers[r]], list(xs), px, into)

    for r in range(rows):
        joined_rows(r, ys[r], ys[r + 1], out[ys[r] : ys[r + 1]])
    for r in range(1, rows):
        reach = seam_reach(px, ys, r)
        if reach > 0:
            lo, hi = ys[r] - reach, ys[r] + reach
            weight = edge_weights(reach).reshape([-1] + [1] * (out.ndim - 1))
            out[lo:hi] = mix(joined_rows(r - 1, lo, hi), joined_rows(r, lo, hi), weight)
    return out


def _join(parts: list[np.ndarray], edges: list[int], px: int, out: np.ndarray | None = None) -> np.ndarray:
    """Side by side (along columns) cells of one row, grown as :func:`extension` says, cross-faded."""
    if out is None:
        out = np.empty((parts[0].shape[0], edges[-1], *parts[0].shape[2:]), np.uint8)
    starts = [edges[k] - extension(px, k, len(parts))[0] for k in range(len(parts))]
    for k, part in enumerate(parts):
        out[:, edges[k] : edges[k + 1]] = part[:, edges[k] - starts[k] : edges[k + 1] - starts[k]]
    for k in range(1, len(parts)):
        reach = seam_reach(px, edges, k)
        if reach > 0:
            lo, hi = edges[k] - reach, edges[k] + reach
            weight = edge_weights(reach).reshape([1, -1] + [1] * (out.ndim - 2))
            out[:, lo:hi] = mix(parts[k - 1][:, lo - starts[k - 1] : hi - starts[k - 1]],
                                parts[k][:, lo - starts[k] : hi - starts[k]], weight)
    return out


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
    return array[_reflect_101(np.arange(y, y + height), rows)][:, _reflect_101(np.arange(x, x + width), cols)]


def _reflect_101(index: np.ndarray, length: int) -> np.ndarray:
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    index = np.mod(index, period)
    return np.where(index >= length, period - index, index)

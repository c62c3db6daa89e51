"""Bezier (docs/method.md, Bezier): a random closed Bezier blob of one tissue over another.

n random points in the unit square (resampled until every pair of consecutive points, the closing
pair included, is at least 0.7/n apart in Euclidean distance), sorted by angle around their
centroid, joined by tangent-continuous cubic Bezier edges whose tangents blend the incoming and
outgoing chords with weight p = arctan(edgy)/pi + 0.5. The filled curve is the foreground mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from hisyngen.synthesis.paired import PairedStrategy
from hisyngen.synthesis.registry import register

_SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point precision: 1/16 pixel


def blob_points(rng: np.random.Generator, n: int, min_spacing: float, max_tries: int) -> tuple[np.ndarray, int]:
    """(n, 2) points in [0, 1)^2 sorted by angle, and the number of draws it took.

    When no draw within ``max_tries`` meets the spacing, the best-spaced draw is returned.
    """
    best, best_gap = None, -1.0
    for attempt in range(1, max_tries + 1):
        points = sort_by_angle(rng.random((n, 2)))
        gap = float(np.min(np.linalg.norm(np.roll(points, -1, axis=0) - points, axis=1)))
        if gap >= min_spacing:
            return points, attempt
        if gap > best_gap:
            best, best_gap = points, gap
    return best, max_tries  # type: ignore[return-value]


def sort_by_angle(points: np.ndarray) -> np.ndarray:
    """Points ordered counter-clockwise by angle around their centroid."""
    centre = points.mean(axis=0)
    return points[np.argsort(np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0]))]


def blob_outline(points: np.ndarray, rad: float, edgy: float, samples_per_edge: int = 64) -> np.ndarray:
    """The closed outline through ``points`` as (n * samples_per_edge, 2) coordinates."""
    weight = np.arctan(edgy) / np.pi + 0.5
    following = np.roll(points, -1, axis=0)
    chords = following - points
    lengths = np.linalg.norm(chords, axis=1, keepdims=True)
    directions = chords / np.maximum(lengths, 1e-12)
    tangents = weight * directions + (1 - weight) * np.roll(directions, 1, axis=0)  # outgoing, incoming
    norms = np.linalg.norm(tangents, axis=1, keepdims=True)
    tangents = np.where(norms > 1e-9, tangents / np.maximum(norms, 1e-12), directions)  # a cusp keeps its chord
    p0, p3 = points, following
    p1 = p0 + rad * lengths * tangents
    p2 = p3 - rad * lengths * np.roll(tangents, -1, axis=0)
    s = np.linspace(0.0, 1.0, samples_per_edge, endpoint=False)[None, :, None]
    curve = ((1 - s) ** 3 * p0[:, None] + 3 * (1 - s) ** 2 * s * p1[:, None]
             + 3 * (1 - s) * s ** 2 * p2[:, None] + s ** 3 * p3[:, None])
    return curve.reshape(-1, 2)


def rasterise(outline: np.ndarray, size: int) -> np.ndarray:
    """Boolean (size, size) mask of the filled closed outline given in unit coordinates."""
    scaled = np.round(outline * size * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [scaled], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return mask.view(bool)


@dataclass(frozen=True)
class Bezier(PairedStrategy):
    """A closed Bezier blob of one tissue pasted over another (two classes per image).

    ``points`` is n, ``rad`` the control-arm length as a fraction of the chord, ``edgy`` the
    sharpness of the corners; ``pairs``: see :class:`~hisyngen.synthesis.paired.PairedStrategy`.
    ``stain``, ``feather`` and ``seam_ignore``: see :class:`~hisyngen.synthesis.base.MixingStrategy`
    (reference: the base image).
    """

    name: ClassVar[str] = "bezier"
    points: int = 5
    rad: float = 0.2
    edgy: float = 0.05
    min_spacing: float = 0.7
    """Minimum distance between consecutive points, times 1/n."""
    max_tries: int = 200
    pairs: tuple[tuple[int, int], ...] | None = None

    def problems(self) -> list[str]:
        out = super().problems()
        if not isinstance(self.points, int) or self.points < 3:
            out.append(f"points must be an integer >= 3 (a closed curve needs three), got {self.points!r}")
        if not 0.0 < self.rad <= 1.0:
            out.append(f"rad must be in (0, 1], got {self.rad}")
        if self.edgy < 0:
            out.append(f"edgy must be >= 0, got {self.edgy}")
        # Consecutive points of a loop in the unit square cannot all be far apart (a loop's length is
        # at most about 4): beyond 2/n spacing the retries would almost always run out.
        if not 0 <= self.min_spacing <= 2:
            out.append(f"min_spacing must be in [0, 2] (spacing min_spacing/points), got {self.min_spacing}")
        if not isinstance(self.max_tries, int) or not 1 <= self.max_tries <= 100_000:
            out.append(f"max_tries must be an integer in 1..100000, got {self.max_tries!r}")
        return out

    def region(self, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        points, tries = blob_points(rng, self.points, self.min_spacing / self.points, self.max_tries)
        inside = rasterise(blob_outline(points, self.rad, self.edgy), self.size)
        return inside, {"points": np.round(points, 4).tolist(), "tries": tries}


register(Bezier)

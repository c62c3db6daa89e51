"""Stain matching kernels: map a tissue region's colours toward a reference before it is pasted.

Pure functions over numpy arrays with explicit inputs (nothing random, nothing cached). Both
methods split the work in two: *statistics* of a whole source image (computed on its tissue pixels,
on a regular subsample) and a *transfer* that maps any region of that source with those statistics
and the reference's. White slide background is excluded from the statistics and left untouched by
the transfer; which pixels are background is the caller's explicit ``background`` mask (strategies
pass the pool's detector: grayscale > 220 minus white blobs under 250 pixels, see
``hisyngen.sources.background``).

* **Reinhard** (Reinhard et al., "Color transfer between images", 2001), in OpenCV's 8-bit CIE L*a*b*
  (L scaled to 0-255, a and b offset by 128): per channel, ``(v - mean_src) * std_ref / std_src +
  mean_ref``. :func:`reinhard` applies it exactly (a lookup table between a LAB conversion and its
  inverse); strategies apply :func:`reinhard_affine`, its first-order expansion about the source's
  mean colour: one 3 x 4 RGB matrix, ``J_ref^-1 S J_src``, with ``J`` the Jacobian of RGB -> LAB at
  a mean colour and ``S`` the ratio of the standard deviations. On bcss-wsss-mini source pairs it is
  within about one grey level (mean absolute difference) of the exact map, which moves pixels by
  7-40 levels, at a thirtieth of the cost (two LAB conversions of every pasted pixel otherwise cost
  more than the rest of a sample).
* **Macenko** (Macenko et al., "A method for normalizing histology slides for quantitative
  analysis", ISBI 2009): optical density ``OD = -ln((I + 1) / 256)``; pixels with OD below ``beta`` in
  any channel are dropped; the two leading right singular vectors of the OD matrix span the stain
  plane; the stain vectors are the directions at the ``alpha`` and ``100 - alpha`` percentiles of
  the pixels' angles in that plane (hematoxylin: the one with the larger red OD); concentrations are
  least-squares coordinates on the stain vectors, scaled so their 99th percentiles match the
  reference's. Every step after the OD is linear, so the transfer is one 3 x 3 matrix on OD;
  intensities come back as ``256 exp(-OD') - 1`` rounded to the nearest level, with OD' clipped to
  [0, ln 256] (intensities 255 to 0).

Each source's half of its transfer matrix (Reinhard: RGB to standardised LAB deviations; Macenko:
the stain pseudo-inverse scaled by the maxima) is computed once with its statistics, so a region's
transfer costs one small matrix product and one pass of OpenCV over its pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

STAIN_METHODS = ("none", "reinhard", "macenko")
"""Values of the strategies' ``stain`` parameter; ``none`` is the paper's plain mixing."""

STATS_SIDE = 56
"""Statistics use every k-th pixel in each direction, k chosen so about STATS_SIDE x STATS_SIDE
pixels remain (k = 4 on 224 px sources): means, spreads and percentiles of a stain barely move,
and the LAB/OD conversion of a whole source would otherwise cost more than the transfer."""

MIN_TISSUE_PIXELS = 32
"""Fewer tissue pixels than this in the subsample and a source has no statistics (left unmapped)."""

MIN_LAB_STD = 1.0
"""Floor of a source's LAB standard deviation (8-bit units) so a flat region is shifted, not blown up."""

MACENKO_ALPHA = 1.0
MACENKO_BETA = 0.15
MACENKO_MAX_PERCENTILE = 99.0

_OD_TABLE = (-np.log((np.arange(256, dtype=np.float64) + 1.0) / 256.0)).astype(np.float32)
"""Optical density of each 8-bit intensity: -ln((I + 1) / 256), so white (255) is 0."""


# eq=False: the fields hold arrays, which have no single truth value; statistics compare by identity.
@dataclass(frozen=True, eq=False)
class LabStats:
    """Mean and standard deviation of a source's tissue in OpenCV 8-bit LAB, per channel, and where
    the affine expansion of Reinhard's map is taken: the RGB colour of the mean and the Jacobian of
    RGB -> LAB there."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    anchor: np.ndarray
    """float64 (3,): the RGB (0-255) colour whose LAB is ``mean``."""
    jacobian: np.ndarray
    """float64 (3, 3): d LAB / d RGB at ``anchor`` (8-bit LAB units per RGB level)."""
    jacobian_inverse: np.ndarray
    """float64 (3, 3): its inverse, for when this source is the reference."""
    to_unit: np.ndarray
    """float64 (3, 4): RGB -> LAB deviation from the mean in standard deviations, to first order:
    ``[W | -W anchor]`` with ``W = diag(1 / max(std, MIN_LAB_STD)) jacobian`` (this source's half
    of :func:`reinhard_affine_matrix`, computed once)."""
    from_unit: np.ndarray
    """float64 (3, 3): ``jacobian_inverse diag(std)``, the reference's half."""


@dataclass(frozen=True, eq=False)
class StainBasis:
    """Macenko stain vectors (unit OD vectors, columns: hematoxylin, eosin) and the 99th
    percentile of each stain's concentration."""

    vectors: np.ndarray
    """float64 (3, 2)."""
    max_concentrations: tuple[float, float]
    unmix: np.ndarray
    """float64 (2, 3): OD -> concentrations relative to their maxima, ``diag(1 / max) pinv(vectors)``
    (this basis' half of :func:`macenko_matrix` as the source, computed once: a pseudo-inverse per
    tile would cost more than the tile's transfer)."""
    remix: np.ndarray
    """float64 (3, 2): ``vectors diag(max)``, its half as the reference."""


Stats = LabStats | StainBasis


def subsample(image: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A regular subsample of ``image`` (contiguous RGB uint8) and of its tissue (uint8 0/1)."""
    step = max(1, min(image.shape[0], image.shape[1]) // STATS_SIDE)
    pixels = np.ascontiguousarray(np.asarray(image)[::step, ::step])
    tissue = np.ascontiguousarray(np.asarray(background)[::step, ::step]).view(np.uint8) ^ 1
    return pixels, tissue


def lab_stats(image: np.ndarray, background: np.ndarray) -> LabStats | None:
    """Reinhard statistics of ``image`` (RGB uint8) over its non-``background`` pixels."""
    pixels, tissue = subsample(image, background)
    if cv2.countNonZero(tissue) < MIN_TISSUE_PIXELS:
        return None
    mean, std = cv2.meanStdDev(cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB), mask=tissue)
    anchor = _lab8_to_rgb(mean.reshape(1, 3))[0]
    step = 2.0  # central differences over +-2 RGB levels
    probes = np.concatenate([anchor + step * np.eye(3), anchor - step * np.eye(3)])
    lab = _rgb_to_lab8(probes)
    jacobian = ((lab[:3] - lab[3:]) / (2 * step)).T
    try:
        inverse = np.linalg.inv(jacobian)
    except np.linalg.LinAlgError:  # not a colour OpenCV's LAB can tell apart locally
        return None
    std = std.ravel()
    whiten = jacobian / np.maximum(std, MIN_LAB_STD)[:, None]
    to_unit = np.concatenate([whiten, -(whiten @ anchor)[:, None]], axis=1)
    return LabStats(tuple(mean.ravel().tolist()), tuple(std.tolist()), anchor, jacobian,  # type: ignore[arg-type]
                    inverse, to_unit, inverse * std[None, :])


# OpenCV's float LAB (L 0-100, a and b about 0) in the units of its 8-bit LAB (L 0-255, a, b + 128)
_LAB8_SCALE = np.array([255.0 / 100.0, 1.0, 1.0])
_LAB8_OFFSET = np.array([0.0, 128.0, 128.0])


def _rgb_to_lab8(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) RGB in 0-255 (floats) to OpenCV 8-bit LAB units, without rounding."""
    lab = cv2.cvtColor((rgb / 255.0).astype(np.float32).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3)
    return lab.astype(np.float64) * _LAB8_SCALE + _LAB8_OFFSET


def _lab8_to_rgb(lab: np.ndarray) -> np.ndarray:
    """(N, 3) OpenCV 8-bit LAB units to RGB in 0-255 (floats, unclipped)."""
    lab = ((lab - _LAB8_OFFSET) / _LAB8_SCALE).astype(np.float32).reshape(-1, 1, 3)
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).reshape(-1, 3).astype(np.float64) * 255.0


def reinhard_affine_matrix(source: LabStats, reference: LabStats) -> np.ndarray:
    """The (3, 4) float32 RGB map ``x -> M x + t`` that is Reinhard's LAB map to first order:
    source anchor to LAB (``J_src``), scale by the std ratios, back to RGB about the reference's
    anchor (``J_ref^-1``): ``from_unit_ref @ to_unit_src`` plus the reference anchor, one product
    of the halves each side computed once."""
    out = reference.from_unit @ source.to_unit
    out[:, 3] += reference.anchor
    return out.astype(np.float32)  # what cv2.transform computes in; a float64 matrix costs it 25% more


def reinhard_affine(region: np.ndarray, background: np.ndarray, source: LabStats, reference: LabStats) -> np.ndarray:
    """:func:`reinhard`, applied as its affine expansion (:func:`reinhard_affine_matrix`): what the
    strategies use. A new array; ``background`` pixels keep their values."""
    region = np.ascontiguousarray(region)
    out = cv2.transform(region, reinhard_affine_matrix(source, reference))
    return _keep_background(out, region, background)


def reinhard_table(source: LabStats, reference: LabStats) -> np.ndarray:
    """The (256, 1, 3) uint8 cv2.LUT table mapping ``source``'s LAB statistics onto ``reference``'s."""
    values = np.arange(256, dtype=np.float64)[:, None]
    mean_s, mean_r = np.array(source.mean), np.array(reference.mean)
    scale = np.array(reference.std) / np.maximum(np.array(source.std), MIN_LAB_STD)
    table = (values - mean_s) * scale + mean_r
    return np.clip(np.rint(table), 0, 255).astype(np.uint8).reshape(256, 1, 3)


def reinhard(region: np.ndarray, background: np.ndarray, source: LabStats, reference: LabStats) -> np.ndarray:
    """``region`` (RGB uint8, a crop of the source ``source`` describes) with its LAB statistics
    mapped onto ``reference``'s, exactly; ``background`` pixels keep their values. A new array.
    (The reference :func:`reinhard_affine` is checked against.)"""
    region = np.ascontiguousarray(region)
    lab = cv2.cvtColor(region, cv2.COLOR_RGB2LAB)
    cv2.LUT(lab, reinhard_table(source, reference), dst=lab)
    out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return _keep_background(out, region, background)


def optical_density(pixels: np.ndarray) -> np.ndarray:
    """float32 OD of uint8 intensities (same shape; cv2.LUT for contiguous 3-channel images,
    three times faster than numpy indexing)."""
    if pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.flags.c_contiguous:
        return cv2.LUT(pixels, _OD_TABLE)
    return _OD_TABLE[pixels]


def macenko_basis(image: np.ndarray, background: np.ndarray, alpha: float = MACENKO_ALPHA,
                  beta: float = MACENKO_BETA) -> StainBasis | None:
    """Macenko stain vectors and maximal concentrations of ``image``'s non-``background`` pixels
    (None when too few pixels carry stain or they span no plane: a flat colour)."""
    pixels, tissue = subsample(image, background)
    od = optical_density(pixels[tissue.view(bool)]).astype(np.float64)
    od = od[(od >= beta).all(axis=1)]
    if len(od) < MIN_TISSUE_PIXELS:
        return None
    # The right singular vectors of OD are the eigenvectors of OD^T OD (3 x 3: cheaper than an SVD).
    values, vectors = np.linalg.eigh(od.T @ od)
    if values[1] <= 1e-9 * values[2]:
        return None
    plane = vectors[:, [2, 1]]
    if plane[:, 0].sum() < 0:  # OD is non-negative: orient the leading vector into the positive octant
        plane[:, 0] = -plane[:, 0]
    projected = od @ plane
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [alpha, 100.0 - alpha])
    first = plane @ np.array([np.cos(low), np.sin(low)])
    second = plane @ np.array([np.cos(high), np.sin(high)])
    stains = np.stack([first, second] if first[0] >= second[0] else [second, first], axis=1)
    if abs(np.linalg.det(stains.T @ stains)) < 1e-6:  # the two directions coincide
        return None
    concentrations = od @ np.linalg.pinv(stains).T
    peaks = np.percentile(concentrations, MACENKO_MAX_PERCENTILE, axis=0)
    if not (peaks > 1e-6).all():
        return None
    return StainBasis(stains, (float(peaks[0]), float(peaks[1])), np.linalg.pinv(stains) / peaks[:, None],
                      stains * peaks[None, :])


def macenko_matrix(source: StainBasis, reference: StainBasis) -> np.ndarray:
    """The 3 x 3 float32 map of OD: unmix on ``source``'s stains, rescale the concentrations to
    ``reference``'s maxima, remix with ``reference``'s stains (``remix_ref @ unmix_src``)."""
    return (reference.remix @ source.unmix).astype(np.float32)


_LOG_256 = float(np.log(256.0))


def macenko(region: np.ndarray, background: np.ndarray, source: StainBasis, reference: StainBasis) -> np.ndarray:
    """``region`` (RGB uint8, a crop of the source ``source`` describes) re-stained with
    ``reference``'s stain vectors and concentration range; ``background`` pixels keep their values."""
    region = np.ascontiguousarray(region)
    exponent = cv2.transform(optical_density(region), -macenko_matrix(source, reference))  # -OD'
    # I = 256 exp(-OD') - 1 rounded and saturated: -OD' clipped to [-ln 256, 0] (I in [0, 255]) keeps
    # the exp finite and convertScaleAbs' absolute value a no-op. numpy's exp: 8x cv2.exp's speed.
    np.clip(exponent, -_LOG_256, 0.0, out=exponent)
    np.exp(exponent, out=exponent)
    out = cv2.convertScaleAbs(exponent, alpha=256.0, beta=-1.0)
    return _keep_background(out, region, background)


def stain_stats(method: str, image: np.ndarray, background: np.ndarray) -> Stats | None:
    """The statistics ``method`` needs of a source (None for 'none', or when it has too little tissue)."""
    if method == "reinhard":
        return lab_stats(image, background)
    if method == "macenko":
        return macenko_basis(image, background)
    if method == "none":
        return None
    raise ValueError(f"unknown stain method {method!r}; choose from {', '.join(STAIN_METHODS)}")


def transfer(region: np.ndarray, background: np.ndarray, source: Stats | None, reference: Stats | None) -> np.ndarray:
    """``region`` mapped from ``source``'s stain to ``reference``'s by the method the statistics
    belong to; ``region`` itself when either is missing (no tissue to measure)."""
    if source is None or reference is None:
        return region
    if isinstance(source, LabStats) and isinstance(reference, LabStats):
        return reinhard_affine(region, background, source, reference)
    if isinstance(source, StainBasis) and isinstance(reference, StainBasis):
        return macenko(region, background, source, reference)
    raise TypeError("source and reference statistics come from different stain methods")


def _keep_background(out: np.ndarray, original: np.ndarray, background: np.ndarray) -> np.ndarray:
    # no background.any() first: it costs as much as the masked copy of nothing
    cv2.copyTo(original, np.ascontiguousarray(background).view(np.uint8), out)
    return out

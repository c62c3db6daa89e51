"""Data transforms for the HisynSeg pipelines (registered in ``mmseg.registry.TRANSFORMS``).

Geometric transforms (:class:`DualTransform`) move image and every ``seg_fields`` map with the
same parameters: images bilinear, masks nearest (never interpolate class indices). Randomness comes
from ``np.random`` like mmcv's own transforms, so mmengine's per-worker seeding makes runs reproducible.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS

from hisyngen.spec import IGNORE_INDEX

_BORDERS = {"reflect_101": cv2.BORDER_REFLECT_101, "reflect": cv2.BORDER_REFLECT,
            "replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}


def _seg_keys(results: dict) -> list[str]:
    return list(dict.fromkeys(results.get("seg_fields", [])))


def _border(name: str) -> int:
    if name not in _BORDERS:
        raise ValueError(f"border {name!r} is not one of {sorted(_BORDERS)}")
    return _BORDERS[name]


@TRANSFORMS.register_module()
class LoadAnnotationsOrIgnore(LoadAnnotations):
    """``LoadAnnotations``, except that a sample whose ``seg_map_path`` is None (a real image
    without mask) gets an all-255 map of the image's size. Place after ``LoadImageFromFile``."""

    def _load_seg_map(self, results: dict) -> None:
        if results.get("seg_map_path") is None:
            if "img" not in results:
                raise KeyError("LoadAnnotationsOrIgnore needs the image loaded first (put LoadImageFromFile before it)")
            results["gt_seg_map"] = np.full(results["img"].shape[:2], IGNORE_INDEX, np.uint8)
            results["seg_fields"].append("gt_seg_map")
        else:
            super()._load_seg_map(results)


@TRANSFORMS.register_module()
class RecomputeImageLabels(BaseTransform):
    """Set a synthetic sample's ``img_labels`` to the classes present in its (augmented) mask.

    Runs after augmentation: a crop or rotation can remove a tissue from the image, and its label
    must go with it. 255 never counts. Real samples keep their image-level labels (their mask is
    empty, or a pseudo mask that must not override the tags), unless ``real=True``.
    """

    def __init__(self, real: bool = False) -> None:
        self.real = real

    def transform(self, results: dict) -> dict:
        if not (results.get("is_synthetic") or self.real):
            return results
        mask = results["gt_seg_map"]
        num_classes = len(results["img_labels"])
        present = np.unique(mask)
        present = present[present != IGNORE_INDEX]
        if present.size and present.max() >= num_classes:
            raise ValueError(f"{results.get('seg_map_path')}: mask value {int(present.max())} is not a class "
                             f"(0..{num_classes - 1}) or {IGNORE_INDEX}")
        labels = np.zeros(num_classes, np.uint8)
        labels[present] = 1
        results["img_labels"] = labels
        return results

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(real={self.real})"


class DualTransform(BaseTransform):
    """Base of the geometric transforms: one set of parameters per call, moving the image and every
    ``seg_fields`` map alike (the shape of albumentations' DualTransform and torchvision.transforms.v2).

    A call draws in a fixed order, which is part of the output (same seed, same bytes): first
    ``np.random.rand() < prob`` when the transform has a ``prob``, then :meth:`get_params`, drawn
    even when the call is skipped so that later transforms' draws never depend on the outcome.
    An applied call computes :meth:`prepare` once (what image and masks share: a matrix, a remap
    grid), then ``apply(img, plan)`` on the image and ``apply_to_mask(mask, plan)`` on each map.
    """

    prob: float | None = None
    """Probability of applying; None: always applied, with no draw for it."""
    sets_img_shape = False
    """Whether ``img_shape`` follows the output (the transform can change the size)."""

    def get_params(self, height: int, width: int) -> tuple:
        """Every random draw of one call, for an image of this size."""
        return ()

    def prepare(self, params: tuple, height: int, width: int):  # noqa: ANN201 (per transform)
        return params

    @cache_randomness
    def _sample(self, height: int, width: int) -> tuple | None:
        apply = True if self.prob is None else bool(np.random.rand() < self.prob)
        params = self.get_params(height, width)
        return params if apply else None

    def transform(self, results: dict) -> dict:
        height, width = results["img"].shape[:2]
        params = self._sample(height, width)
        if params is None:
            return results
        plan = self.prepare(params, height, width)
        results["img"] = self.apply(results["img"], plan)
        for key in _seg_keys(results):
            results[key] = self.apply_to_mask(results[key], plan)
        if self.sets_img_shape:
            results["img_shape"] = results["img"].shape[:2]
        return results


@TRANSFORMS.register_module()
class RandomResizedCrop(DualTransform):
    """Crop a random area fraction ``scale`` with aspect ratio in ``ratio``, resize to ``size``.

    torchvision/albumentations semantics; falls back to the largest centred crop of a valid
    ratio after 10 tries. Always applied (it is also what brings every image to ``size``).
    """

    sets_img_shape = True

    def __init__(self, size: int | Sequence[int], scale: Sequence[float] = (0.9, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3)) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)  # (h, w)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)

    def get_params(self, height: int, width: int) -> tuple[int, int, int, int]:
        """The window (top, left, h, w)."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * np.random.uniform(*self.scale)
            aspect = math.exp(np.random.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return int(np.random.randint(0, height - h + 1)), int(np.random.randint(0, width - w + 1)), h, w
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif aspect > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            h, w = height, width
        return (height - h) // 2, (width - w) // 2, h, w

    def _crop_resize(self, array: np.ndarray, window: tuple[int, int, int, int], interpolation: int) -> np.ndarray:
        top, left, h, w = window
        out_h, out_w = self.size
        return cv2.resize(array[top:top + h, left:left + w], (out_w, out_h), interpolation=interpolation)

    def apply(self, img: np.ndarray, plan: tuple[int, int, int, int]) -> np.ndarray:
        return self._crop_resize(img, plan, cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, plan: tuple[int, int, int, int]) -> np.ndarray:
        return self._crop_resize(mask, plan, cv2.INTER_NEAREST)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio})"


@TRANSFORMS.register_module()
class ShiftScaleRotate(DualTransform):
    """Random affine: shift by up to ``shift_limit`` x size, scale 1 +- ``scale_limit``, rotate
    +-``rotate_limit`` degrees about the centre; borders filled by ``border`` for image and mask
    alike (reflect-101 by default, so the mask keeps matching the image)."""

    def __init__(self, shift_limit: float = 0.0625, scale_limit: float = 0.1, rotate_limit: float = 45,
                 prob: float = 0.5, border: str = "reflect_101") -> None:
        self.shift_limit = shift_limit
        self.scale_limit = scale_limit
        self.rotate_limit = rotate_limit
        self.prob = prob
        self.border = _border(border)

    def get_params(self, height: int, width: int) -> tuple[float, float, float, float]:
        """(angle, scale, dx, dy)."""
        angle = np.random.uniform(-self.rotate_limit, self.rotate_limit)
        scale = np.random.uniform(1 - self.scale_limit, 1 + self.scale_limit)
        dx, dy = np.random.uniform(-self.shift_limit, self.shift_limit, size=2)
        return float(angle), float(scale), float(dx), float(dy)

    def prepare(self, params: tuple[float, float, float, float], height: int, width: int) -> np.ndarray:
        angle, scale, dx, dy = params
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
        matrix[0, 2] += dx * width
        matrix[1, 2] += dy * height
        return matrix

    def apply(self, img: np.ndarray, plan: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        return cv2.warpAffine(img, plan, (w, h), flags=cv2.INTER_LINEAR, borderMode=self.border, borderValue=0)

    def apply_to_mask(self, mask: np.ndarray, plan: np.ndarray) -> np.ndarray:
        h, w = mask.shape[:2]
        return cv2.warpAffine(mask, plan, (w, h), flags=cv2.INTER_NEAREST, borderMode=self.border,
                              borderValue=IGNORE_INDEX)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(shift_limit={self.shift_limit}, scale_limit={self.scale_limit}, "
                f"rotate_limit={self.rotate_limit}, prob={self.prob})")


@TRANSFORMS.register_module()
class OpticalDistortion(DualTransform):
    """Random barrel/pincushion lens distortion (radial coefficient k in +-``distort_limit``,
    centre shifted by up to ``shift_limit`` x size); image bilinear, masks nearest."""

    def __init__(self, distort_limit: float = 0.05, shift_limit: float = 0.05, prob: float = 0.5,
                 border: str = "reflect_101") -> None:
        self.distort_limit = distort_limit
        self.shift_limit = shift_limit
        self.prob = prob
        self.border = _border(border)

    def get_params(self, height: int, width: int) -> tuple[float, float, float]:
        """(k, dx, dy)."""
        k = np.random.uniform(-self.distort_limit, self.distort_limit)
        dx, dy = np.random.uniform(-self.shift_limit, self.shift_limit, size=2)
        return float(k), float(dx), float(dy)

    def prepare(self, params: tuple[float, float, float], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        k, dx, dy = params
        h, w = height, width
        camera = np.array([[w, 0, w / 2 + dx * w], [0, h, h / 2 + dy * h], [0, 0, 1]], dtype=np.float32)
        coeffs = np.array([k, k, 0, 0, 0], dtype=np.float32)
        map_x, map_y = cv2.initUndistortRectifyMap(camera, coeffs, None, camera, (w, h), cv2.CV_32FC1)
        return map_x, map_y

    def apply(self, img: np.ndarray, plan: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return cv2.remap(img, *plan, cv2.INTER_LINEAR, borderMode=self.border)

    def apply_to_mask(self, mask: np.ndarray, plan: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return cv2.remap(mask, *plan, cv2.INTER_NEAREST, borderMode=self.border, borderValue=IGNORE_INDEX)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(distort_limit={self.distort_limit}, prob={self.prob})"


@TRANSFORMS.register_module()
class Rot90(DualTransform):
    """Rotate the image (and loaded maps) by ``k`` x 90 degrees counter-clockwise, recording
    ``rot90`` so ``HisynEncoderDecoder`` rotates the prediction back: with horizontal flips this
    gives the 8 flips/rotations of the test-time augmentation (docs/method.md, Training: Evaluation)."""

    sets_img_shape = True

    def __init__(self, k: int) -> None:
        self.k = int(k) % 4

    def apply(self, img: np.ndarray, plan: tuple) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(img, self.k))

    apply_to_mask = apply  # a rotation by quarter turns moves pixels without interpolating

    def transform(self, results: dict) -> dict:
        results = super().transform(results)
        results["rot90"] = self.k
        return results

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(k={self.k})"

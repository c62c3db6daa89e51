"""A procedural, clearly-labelled DEMO source in the BCSS-WSSS layout (no real tissue).

Textures imitate H&E at a glance, one per BCSS-WSSS class:

* TUM: dense, large, irregular purple nuclei on pink-purple cytoplasm;
* STR: pink oriented fibres with sparse spindle-shaped nuclei;
* LYM: densely packed small, round, dark nuclei;
* NEC: pale, washed-out pink with granular debris and nuclear fragments.

Multi-tissue images split the patch into organic regions (argmax of smooth random fields); some
images hold white slide background. Val/test images come with exact masks (4 = background). Every
file name starts with ``DEMO-`` and the folder holds a ``DEMO_DATA.txt`` saying what it is.

``hisyngen demo`` builds from it; ``hisyngen demo --train`` then trains and evaluates on its test
masks (:mod:`hisyngen.demo_training`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hisyngen.errors import HisynError
from hisyngen.imageio import atomic_write_bytes, atomic_write_text, encode_mask_png, encode_rgb_png
from hisyngen.sources.labels import labelled_name
from hisyngen.spec import BCSS_WSSS

NOTICE = """DEMO DATA - NOT REAL TISSUE

Procedurally generated H&E-like textures made by `hisyngen demo` to show the pipeline end to end.
Layout and file naming follow BCSS-WSSS (training/, val/{img,mask}, test/{img,mask}; labels
[TUM STR LYM NEC] in the file names; masks 0-3 tissue, 4 background). Do not use for research.
"""

# The line of DEMO_DATA.txt that records the seed the source was drawn with (a rerun with another seed is refused).
SEED_LINE = "seed: "

BACKGROUND = 4
WHITE = np.array([244, 243, 246], np.float32)


def smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field in about [0, 1]: random values on a coarse grid, bicubically upsampled."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _base(rng: np.random.Generator, size: int, colour: tuple[int, int, int], variation: float) -> np.ndarray:
    shade = 1 + variation * (smooth_field(rng, size, 6) - 0.5)
    grain = rng.normal(0, 4, (size, size, 1)).astype(np.float32)
    return np.asarray(colour, np.float32)[None, None, :] * shade[:, :, None] + grain


def _nuclei(image: np.ndarray, rng: np.random.Generator, count: int, radius: tuple[float, float],
            elongation: tuple[float, float], colour: tuple[int, int, int], angle: float | None = None) -> None:
    size = image.shape[0]
    for _ in range(count):
        centre = (int(rng.integers(size)), int(rng.integers(size)))
        r = rng.uniform(*radius)
        axes = (max(1, int(r * rng.uniform(*elongation))), max(1, int(r)))
        theta = angle + rng.normal(0, 12) if angle is not None else rng.uniform(0, 180)
        tone = np.asarray(colour, np.float32) * rng.uniform(0.8, 1.15)
        cv2.ellipse(image, centre, axes, theta, 0, 360, tuple(float(v) for v in tone), -1, cv2.LINE_AA)


def tissue_texture(cls: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """RGB float32 texture of one BCSS-WSSS class (0 TUM, 1 STR, 2 LYM, 3 NEC)."""
    if cls == 0:  # tumour
        image = _base(rng, size, (205, 150, 205), 0.18)
        _nuclei(image, rng, int(rng.integers(70, 110)), (5.5, 10.5), (1.0, 1.6), (95, 50, 145))
        _nuclei(image, rng, 25, (1.5, 3.0), (1.0, 1.3), (60, 30, 110))  # nucleoli / chromatin
    elif cls == 1:  # stroma
        angle = float(rng.uniform(0, 180))
        image = _base(rng, size, (236, 158, 196), 0.12)
        streaks = rng.normal(0, 1, (size, size)).astype(np.float32)
        streaks = cv2.GaussianBlur(streaks, (0, 0), sigmaX=9, sigmaY=0.9)
        rotation = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
        streaks = cv2.warpAffine(streaks, rotation, (size, size), borderMode=cv2.BORDER_REFLECT_101)
        image *= (1 + 0.9 * np.clip(streaks, -0.4, 0.4))[:, :, None]
        _nuclei(image, rng, int(rng.integers(12, 22)), (2.0, 3.0), (3.0, 5.0), (120, 60, 150), angle=-angle)
    elif cls == 2:  # lymphocytes
        image = _base(rng, size, (214, 168, 214), 0.1)
        _nuclei(image, rng, int(rng.integers(260, 340)), (2.8, 4.2), (1.0, 1.15), (55, 32, 115))
    elif cls == 3:  # necrosis
        image = _base(rng, size, (240, 196, 218), 0.22)
        speckle = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 1.2)
        image += 18 * speckle[:, :, None]
        _nuclei(image, rng, int(rng.integers(40, 80)), (0.8, 2.2), (1.0, 2.0), (110, 60, 140))
    else:
        raise ValueError(f"demo class {cls} is not 0-3")
    return image


def compose(classes: list[int], rng: np.random.Generator, size: int, white: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
    """An image made of ``classes`` in organic regions (optionally with white background) and its mask."""
    fields = np.stack([smooth_field(rng, size, 3) for _ in classes])
    region = np.argmax(fields, axis=0)
    mask = np.asarray(classes, np.uint8)[region]
    image = np.zeros((size, size, 3), np.float32)
    for k, cls in enumerate(classes):
        inside = region == k
        if inside.any():
            image[inside] = tissue_texture(cls, rng, size)[inside]
    if white:
        edge = smooth_field(rng, size, 3)
        ramp = np.linspace(0, 1, size, dtype=np.float32)
        side = int(rng.integers(4))
        gradient = {0: ramp[None, :], 1: ramp[::-1][None, :], 2: ramp[:, None], 3: ramp[::-1][:, None]}[side]
        background = (gradient + 0.35 * edge) > 1.05
        image[background] = WHITE + rng.normal(0, 2, (int(background.sum()), 3))
        mask[background] = BACKGROUND
    return np.clip(image, 0, 255).astype(np.uint8), mask


@dataclass(frozen=True)
class DemoSize:
    """How many demo images to make."""

    single_per_class: int = 16
    multi: int = 64
    val: int = 8
    test: int = 8
    size: int = 224


def present_classes(mask: np.ndarray, min_fraction: float = 0.02) -> tuple[int, ...]:
    """The 0/1 label vector of the tissue classes covering at least ``min_fraction`` of the patch."""
    counts = np.bincount(mask.ravel(), minlength=5)[:4]
    return tuple(int(c >= min_fraction * mask.size) for c in counts)


def demo_seed(notice: str) -> int | None:
    """The seed a DEMO_DATA.txt text records (None: written before hisyngen recorded it)."""
    for line in notice.splitlines():
        if line.startswith(SEED_LINE):
            with contextlib.suppress(ValueError):
                return int(line[len(SEED_LINE):])
    return None


def write_demo_source(root: str | Path, seed: int = 0, sizes: DemoSize = DemoSize()) -> Path:
    """Write the demo dataset under ``root`` (BCSS-WSSS layout). Refuses a non-empty foreign folder."""
    root = Path(root)
    marker = root / "DEMO_DATA.txt"
    if root.exists() and any(root.iterdir()) and not marker.is_file():
        raise HisynError(f"{root} exists and is not a hisyngen demo source; choose another folder")
    if marker.is_file():  # already written: the demo is deterministic for its seed, so it is reused for that seed
        written_seed = demo_seed(marker.read_text(encoding="utf-8"))
        if written_seed != seed:
            was = "an unrecorded seed" if written_seed is None else f"seed {written_seed}"
            raise HisynError(f"{root} holds the demo source of {was}, not seed {seed}: use another --out "
                             "or that seed")
        return root
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDE30]))
    palette = BCSS_WSSS.mask_palette()
    train = root / "training"
    train.mkdir(parents=True, exist_ok=True)
    index = 0
    for cls in range(4):
        for _ in range(sizes.single_per_class):
            image, mask = compose([cls], rng, sizes.size, white=rng.random() < 0.25)
            labels = present_classes(mask)
            name = labelled_name(f"DEMO-slide{1 + index % 2}_MPP-0.2500", labels, "digits", index)
            atomic_write_bytes(train / name, encode_rgb_png(image))
            index += 1
    written = 0
    while written < sizes.multi:
        k = int(rng.integers(2, 4))
        classes = sorted(rng.choice(4, size=k, replace=False).tolist())
        image, mask = compose(classes, rng, sizes.size, white=rng.random() < 0.3)
        labels = present_classes(mask)
        if sum(labels) < 2:
            continue  # a region too small to count: draw again
        name = labelled_name(f"DEMO-slide{1 + index % 2}_MPP-0.2500", labels, "digits", index)
        atomic_write_bytes(train / name, encode_rgb_png(image))
        index += 1
        written += 1
    for split, count in (("val", sizes.val), ("test", sizes.test)):
        (root / split / "img").mkdir(parents=True, exist_ok=True)
        (root / split / "mask").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            k = int(rng.integers(2, 5))
            classes = sorted(rng.choice(4, size=k, replace=False).tolist())
            image, mask = compose(classes, rng, sizes.size, white=rng.random() < 0.5)
            name = f"DEMO-slide3_MPP-0.2500+{i}.png" if split == "val" else f"DEMO-slide4_MPP-0.2500+{i}.png"
            atomic_write_bytes(root / split / "img" / name, encode_rgb_png(image))
            atomic_write_bytes(root / split / "mask" / name, encode_mask_png(mask, palette))
    atomic_write_text(marker, f"{NOTICE}\n{SEED_LINE}{seed}\n")  # last: marks the source complete
    return root

"""A procedural, clearly-labelled DEMO source in the BCSS-WSSS layout (no real tissue).

Textures imitate H&E at a glance, one per BCSS-WSSS class:

* TUM: dense, large, irregular purple nuclei on pink-purple cytoplasm;
* STR: pink oriented fibres with sparse spindle-shaped nuclei;
* LYM: densely packed small, round, dark nuclei;
* NEC: pale, washed-out pink with granular debris and nuclear fragments.

Multi-tissue images split the patch into organic regions (argmax of smooth random fields); some
images hold white slide background. Val/test images come with exact masks (4 = background). Every
file name starts with ``DEMO-`` and the folder holds a ``DEMO_DATA.txt`` saying what it is.

``hisyngen demo --train`` then runs the CPU training command its build printed and evaluates the
model on the test masks (:func:`train_demo`).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

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


def tissue_texture(cls: int, rng: np.random.Generator, size: int = 224) -> np.ndarray:
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


def compose(classes: list[int], rng: np.random.Generator, size: int = 224, white: bool = False
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


# --- `hisyngen demo --train`: the printed CPU command, then an evaluation on the test masks ----------

TRAIN_MARKER = "hisyngen-demo-train.json"
"""In the run's work dir once its training finished: the command, so a rerun reuses the run."""
OVERLAY_NAME = "prediction.png"
OVERLAY_IMAGES = 4


def cpu_command(summary: dict[str, Any]) -> dict[str, Any]:
    """The CPU trial among the training commands a build summary prints."""
    for command in summary.get("train_commands") or []:
        if command["device"] == "cpu":
            return command
    raise HisynError(f"the build summary of {summary.get('out')} holds no CPU training command (no MMSeg export?)")


def _run_logged(argv: list[str], log: Path, echo: Callable[[str], None] | None) -> None:
    """Run ``argv``, its output (stdout and stderr) into ``log`` and, line by line, to ``echo``."""
    with open(log, "w", encoding="utf-8") as handle, subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        last = ""
        for line in proc.stdout:  # type: ignore[union-attr]
            handle.write(line)
            last = line.strip() or last
            if echo is not None:
                echo(line.rstrip("\n"))
    if proc.returncode:
        raise HisynError(f"the demo's training failed (exit {proc.returncode}): {last}; its output: {log}")


def overlay_sheet(rows: list[np.ndarray], spec: Any, title: str) -> np.ndarray:
    """The rows of :func:`hisyngen.mmseg.evaluate.prediction_sheet` under a title, above a legend."""
    from hisyngen.preview import legend

    grid = np.concatenate(rows, axis=0)
    strip = np.full((30, grid.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, title, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, grid, legend(spec, grid.shape[1])], axis=0)


def clear_checkpoints(work: Path, root: Path) -> None:
    """Remove the ``iter_*.pth`` and ``last_checkpoint`` an earlier (other) run left in the demo's
    work dir ``work``, so that the run about to start is the one evaluated, not an older, longer one.
    Only inside the demo's own folder ``root``: a work dir elsewhere is the user's and is left alone."""
    if not work.resolve().is_relative_to(root.resolve()):
        return
    for path in [*work.glob("iter_*.pth"), work / "last_checkpoint"]:
        path.unlink(missing_ok=True)


def train_demo(root: str | Path, summary: dict[str, Any], extra_args: Sequence[str] = (),
               echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the CPU command the demo's build printed, evaluate it on the demo's test masks, and write
    ``ROOT/prediction.png`` (image | ground truth | prediction for the first test images).

    The command runs as printed (``hisyngen train`` in a subprocess of this Python; its output goes
    to ``WORK_DIR/train.log`` and to ``echo``), with ``extra_args`` appended (tests shorten it with
    ``--cfg-options train_cfg.max_iters=N``: mmengine lets the last value win). A finished training
    of the same command in the same work dir is reused; an unfinished one starts over.
    """
    from hisyngen.configs import mmseg_config_path
    from hisyngen.extras import require_openmmlab

    require_openmmlab("hisyngen demo --train")
    root = Path(root)
    args = [*shlex.split(cpu_command(summary)["command"])[1:], *extra_args]
    command = shlex.join(["hisyngen", *args])
    work = Path(cpu_command(summary)["work_dir"])
    marker = work / TRAIN_MARKER
    finished = json.loads(marker.read_text()) if marker.is_file() else {}
    reused = finished.get("command") == command
    if reused:
        seconds = finished["train_seconds"]
    else:
        marker.unlink(missing_ok=True)  # a run stopped from here on is not finished
        work.mkdir(parents=True, exist_ok=True)
        clear_checkpoints(work, root)
        if echo is not None:
            echo(f"training: {command}")
        started = time.perf_counter()
        _run_logged([sys.executable, "-m", "hisyngen", *args], work / "train.log", echo)
        seconds = round(time.perf_counter() - started, 1)
        atomic_write_text(marker, json.dumps({"command": command, "train_seconds": seconds}, indent=2) + "\n")

    from hisyngen.mmseg.evaluate import evaluate_checkpoint, final_checkpoint
    from hisyngen.sources import open_source

    source = open_source(root / "source")
    checkpoint = final_checkpoint(work)
    if echo is not None:
        echo(f"evaluating {checkpoint} on {len(source.test)} test masks")
    scores, rows = evaluate_checkpoint(work / mmseg_config_path(args[1]).name, checkpoint, source.test, source.spec,
                                       overlays=OVERLAY_IMAGES)
    title = f"image | ground truth | prediction    test mIoU {scores['mIoU']:.1f}, fwIoU {scores['fwIoU']:.1f}"
    overlay_path = root / OVERLAY_NAME
    atomic_write_bytes(overlay_path, encode_rgb_png(overlay_sheet(rows, source.spec, title)))
    return {"command": command, "work_dir": str(work), "checkpoint": str(checkpoint), "reused": reused,
            "train_seconds": seconds, "test_images": len(source.test), **scores, "overlay": str(overlay_path)}


def render_training(result: dict[str, Any]) -> str:
    """What ``hisyngen demo --train`` prints after the build summary."""
    how = "reused the finished run, trained" if result["reused"] else "trained"
    per_class = ", ".join(f"{name} {value:.1f}" for name, value in result["IoU"].items())
    return "\n".join([
        f"demo training ({how} in {result['train_seconds']:.0f}s: {result['command']})",
        f"test mIoU {result['mIoU']:.2f}, fwIoU {result['fwIoU']:.2f} on the {result['test_images']} demo test masks "
        f"(IoU {per_class})",
        f"prediction overlay (image | ground truth | prediction): {result['overlay']}"])

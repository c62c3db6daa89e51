"""``hisyngen demo --train``: run the CPU training command the demo's build printed, then evaluate
the model on the demo source's test masks (mIoU, fwIoU) and draw its predictions.

The demo source itself is written by :mod:`hisyngen.sources.demo`; the commands are chosen by
:mod:`hisyngen.train_plan`.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from hisyngen.errors import HisynError
from hisyngen.imageio import atomic_write_bytes, atomic_write_text, encode_rgb_png

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
    from hisyngen.mmseg_launch import mmseg_config_path
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

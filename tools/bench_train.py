#!/usr/bin/env python
"""Training speed of the hisyngen MMSegmentation configs, fp32 vs bf16 side by side.

CPU (always): seconds per iteration and peak RSS, OMP_NUM_THREADS=1, for
  - the smoke config (ResNet-18, 64 px crops, 2 synthetic + 2 real images),
  - the CPU config (ResNet-18, output stride 16, 224 px, 8 synthetic + 8 real images), and
  - DeepLabV3+ R50-D8 at 224 px with 2 synthetic + 2 real images.
CUDA (when available): R50-D8 at 224 px with 32 synthetic + 32 real images, images/s.

Each (case, precision) runs in its own process (peak RSS is per process) through mmengine's Runner
with the packaged config, random weights, no validation and no checkpoints; ``--precision bf16``
trains exactly as ``hisyngen train --precision bf16`` does (``BF16OptimWrapper``, bf16 autocast,
float32 weights). The precisions alternate within each of ``--rounds`` rounds, so both see the
same machine load; the table gives medians and ranges over the rounds. Without ``--data-root`` a
throwaway export of random 224 px images is generated. Prints a markdown table.

    python tools/bench_train.py                                  # every case, fp32 and bf16
    python tools/bench_train.py --cases cpu --rounds 5           # the CPU config only
    python tools/bench_train.py --data-root EXPORT --precision fp32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    # name: (config, device, synthetic per step, real per step, crop, warmup iters, timed iters)
    "smoke (R18, 64 px), CPU": ("smoke", "cpu", 2, 2, 64, 2, 8),
    "cpu config (R18 OS16, 224 px), CPU": ("cpu", "cpu", 8, 8, 224, 1, 3),
    "R50-D8 224 px, CPU": ("bcss-wsss", "cpu", 2, 2, 224, 1, 3),
    "R50-D8 224 px, CUDA": ("bcss-wsss", "cuda", 32, 32, 224, 5, 20),
}


def write_random_export(root: Path, count: int = 64, size: int = 224) -> Path:
    """A throwaway export (docs/formats.md layout) of random images and block masks, 4 classes."""
    import numpy as np

    from hisyngen.imageio import atomic_write_bytes, encode_mask_png, encode_rgb_png
    from hisyngen.spec import BCSS_WSSS

    rng = np.random.default_rng(0)
    palette = BCSS_WSSS.mask_palette()
    for sub in ("img_dir/train", "ann_dir/train", "img_dir/train_real", "img_dir/val", "ann_dir/val", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    syn_rows, real_rows = [], []
    for i in range(count):
        mask = rng.integers(0, 4, size=(4, 4), dtype=np.uint8).repeat(size // 4, 0).repeat(size // 4, 1)
        image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        atomic_write_bytes(root / "img_dir/train" / f"s{i}.png", encode_rgb_png(image))
        atomic_write_bytes(root / "ann_dir/train" / f"s{i}.png", encode_mask_png(mask, palette))
        atomic_write_bytes(root / "img_dir/train_real" / f"r{i}.png", encode_rgb_png(image[::-1].copy()))
        labels = [int(c in mask) for c in range(4)]
        syn_rows.append(json.dumps({"id": f"s{i}", "strategy": "random", "labels": labels, "disc_score": None,
                                    "seed": 0, "sources": []}))
        real_rows.append(json.dumps({"id": f"r{i}", "labels": labels, "source": ""}))
    (root / "splits/train.txt").write_text("\n".join(f"s{i}" for i in range(count)) + "\n")
    (root / "splits/train_real.txt").write_text("\n".join(f"r{i}" for i in range(count)) + "\n")
    (root / "splits/val.txt").write_text("")
    (root / "synthetic.jsonl").write_text("\n".join(syn_rows) + "\n")
    (root / "real.jsonl").write_text("\n".join(real_rows) + "\n")
    (root / "metainfo.json").write_text(json.dumps({
        "dataset": "bcss-wsss", "classes": list(BCSS_WSSS.classes),
        "palette": [list(c) for c in BCSS_WSSS.palette[:4]], "ignore_index": 255,
        "source_background_index": 4, "strategies": ["random"], "hisyngen_version": "bench"}))
    return root


def run_case(name: str, data_root: str, precision: str) -> dict:
    """Train one case in this process; returns seconds/iteration, images/s and peak RSS."""
    import resource

    import torch
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from hisyngen.mmseg_launch import BF16_OPTIM_WRAPPER, data_root_options, mmseg_config_path

    config, device, n_syn, n_real, crop, warmup, timed = CASES[name]
    if device == "cpu":
        torch.set_num_threads(1)
    cfg = Config.fromfile(str(mmseg_config_path(config)))
    options = dict(o.split("=", 1) for o in data_root_options(data_root))
    cfg.merge_from_dict(options)
    norm = dict(type="BN", requires_grad=True)  # one process: SyncBN would only add overhead checks
    cfg.model.pretrained = None
    if precision == "bf16":
        cfg.optim_wrapper.type = BF16_OPTIM_WRAPPER
    cfg.model.backbone.norm_cfg = norm
    cfg.model.decode_head.norm_cfg = norm
    cfg.model.data_preprocessor.size = (crop, crop)
    for step in cfg.train_dataloader.dataset.pipeline:
        if step["type"] == "RandomResizedCrop":
            step["size"] = (crop, crop)
    cfg.train_dataloader.batch_size = n_syn + n_real
    cfg.train_dataloader.batch_sampler.ratio = (n_syn, n_real)
    workers = 0 if device == "cpu" else min(8, os.cpu_count() or 1)
    cfg.train_dataloader.num_workers = workers
    cfg.train_dataloader.persistent_workers = workers > 0
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=warmup + timed, val_interval=10 ** 9)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger.interval = 10 ** 6
    cfg.work_dir = tempfile.mkdtemp(prefix="bench-")
    cfg.log_level = "WARNING"

    class Stamps(Hook):
        def __init__(self) -> None:
            self.times: list[float] = []

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    stamps = Stamps()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(stamps, priority="LOWEST")
    runner.train()
    per_iter = (stamps.times[-1] - stamps.times[warmup - 1]) / timed
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = dict(case=name, precision=precision, images=n_syn + n_real, crop=crop, s_per_iter=per_iter,
                  images_per_s=(n_syn + n_real) / per_iter, peak_rss_mib=peak_kib / 1024)
    if device == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return result


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def render(rows: list[dict], precisions: list[str]) -> list[str]:
    """Markdown: one row per (case, precision), medians and [min-max] over the rounds; the speed-up
    is the median of each round's fp32/bf16 ratio."""
    lines = ["| case | precision | images/step (syn+real) | s/iter, median [range] | images/s | bf16 speed-up "
             "| peak RSS (MiB) | peak GPU mem (MiB) |", "|---|---|---|---|---|---|---|---|"]
    for case in dict.fromkeys(r["case"] for r in rows):
        by = {p: [r for r in rows if r["case"] == case and r["precision"] == p] for p in precisions}
        for p in precisions:
            runs = by[p]
            if not runs:
                continue
            t = [r["s_per_iter"] for r in runs]
            speed = "-"
            if p == "bf16" and by.get("fp32"):
                ratios = [a["s_per_iter"] / b["s_per_iter"] for a, b in zip(by["fp32"], runs)]
                speed = f"{median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
            gpu = f"{median([r['peak_gpu_mib'] for r in runs]):.0f}" if "peak_gpu_mib" in runs[0] else "-"
            lines.append(f"| {case} | {p} | {runs[0]['images']} | {median(t):.3f} [{min(t):.3f}-{max(t):.3f}] "
                         f"| {runs[0]['images'] / median(t):.2f} | {speed} "
                         f"| {median([r['peak_rss_mib'] for r in runs]):.0f} | {gpu} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", help="an MMSeg export (default: generate random 224 px images)")
    parser.add_argument("--cases", default="all",
                        help="comma-separated config names of the cases (smoke, cpu, bcss-wsss) or all")
    parser.add_argument("--precision", default="fp32,bf16", help="comma-separated: fp32, bf16 (default both)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating fp32/bf16 rounds (medians over them)")
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    if any(p not in ("fp32", "bf16") for p in precisions):
        parser.error("--precision takes fp32 and/or bf16")
    if args.case:
        print("RESULT " + json.dumps(run_case(args.case, args.data_root, precisions[0])))
        return

    import torch

    wanted = None if args.cases == "all" else {c.strip() for c in args.cases.split(",")}
    cases = [n for n, c in CASES.items() if (c[1] == "cpu" or torch.cuda.is_available())
             and (wanted is None or c[0] in wanted)]
    if not cases:
        parser.error(f"no case matches --cases {args.cases}")
    with tempfile.TemporaryDirectory() as tmp:
        data_root = args.data_root or str(write_random_export(Path(tmp) / "export"))
        rows = []
        for name in cases:
            env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore") if CASES[name][1] == "cpu" \
                else dict(os.environ, PYTHONWARNINGS="ignore")
            for round_ in range(args.rounds):
                # alternate the order too, so neither precision always runs first in a round
                for precision in (precisions if round_ % 2 == 0 else precisions[::-1]):
                    proc = subprocess.run([sys.executable, __file__, "--case", name, "--data-root", data_root,
                                           "--precision", precision], env=env, capture_output=True, text=True)
                    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
                    if proc.returncode or line is None:
                        sys.exit(f"{name} ({precision}) failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
                    rows.append(json.loads(line[len("RESULT "):]))
                    print(f"done: {name}, {precision}, round {round_ + 1}: {rows[-1]['s_per_iter']:.3f} s/iter",
                          file=sys.stderr)

    from hisyngen.precision import cpu_bf16_flags

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    flags = ", ".join(cpu_bf16_flags()) or "none"
    print(f"torch {torch.__version__}, CPU threads 1 (OMP_NUM_THREADS=1) for CPU cases, CPU bf16 flags: {flags}, "
          f"GPU: {device}; {args.rounds} rounds\n")
    print("\n".join(render(rows, precisions)))


if __name__ == "__main__":
    main()

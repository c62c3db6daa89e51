#!/usr/bin/env python
"""Training speed of the hisyngen MMSegmentation configs.

CPU (always): seconds per iteration and peak RSS, OMP_NUM_THREADS=1, for
  - the smoke config (ResNet-18, 64 px crops, 2 synthetic + 2 real images), and
  - DeepLabV3+ R50-D8 at 224 px with 2 synthetic + 2 real images.
CUDA (when available): R50-D8 at 224 px with 32 synthetic + 32 real images, images/s.

Each case runs in its own process (peak RSS is per process) through mmengine's Runner with the
packaged config, random weights, no validation and no checkpoints. Without ``--data-root`` a
throwaway export of random 224 px images is generated. Prints a markdown table.

    python tools/bench_train.py                      # all cases this machine supports
    python tools/bench_train.py --data-root EXPORT   # on a real export
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


def run_case(name: str, data_root: str) -> dict:
    """Train one case in this process; returns seconds/iteration, images/s and peak RSS."""
    import resource

    import torch
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from hisyngen.configs import data_root_options, mmseg_config_path

    config, device, n_syn, n_real, crop, warmup, timed = CASES[name]
    if device == "cpu":
        torch.set_num_threads(1)
    cfg = Config.fromfile(str(mmseg_config_path(config)))
    options = dict(o.split("=", 1) for o in data_root_options(data_root))
    cfg.merge_from_dict(options)
    norm = dict(type="BN", requires_grad=True)  # one process: SyncBN would only add overhead checks
    cfg.model.pretrained = None
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
    result = dict(case=name, images=n_syn + n_real, crop=crop, s_per_iter=per_iter,
                  images_per_s=(n_syn + n_real) / per_iter, peak_rss_mib=peak_kib / 1024)
    if device == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", help="an MMSeg export (default: generate random 224 px images)")
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.case:
        print("RESULT " + json.dumps(run_case(args.case, args.data_root)))
        return

    import torch

    cases = [n for n, c in CASES.items() if c[1] == "cpu" or torch.cuda.is_available()]
    with tempfile.TemporaryDirectory() as tmp:
        data_root = args.data_root or str(write_random_export(Path(tmp) / "export"))
        rows = []
        for name in cases:
            env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore") if CASES[name][1] == "cpu" \
                else dict(os.environ, PYTHONWARNINGS="ignore")
            proc = subprocess.run([sys.executable, __file__, "--case", name, "--data-root", data_root],
                                  env=env, capture_output=True, text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                sys.exit(f"{name} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
            rows.append(json.loads(line[len("RESULT "):]))
            print(f"done: {name}", file=sys.stderr)

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__}, CPU threads 1 (OMP_NUM_THREADS=1) for CPU cases, GPU: {device}\n")
    print("| case | images/step (syn+real) | s/iter | images/s | peak RSS (MiB) | peak GPU mem (MiB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        gpu = f"{r['peak_gpu_mib']:.0f}" if "peak_gpu_mib" in r else "-"
        print(f"| {r['case']} | {r['images']} | {r['s_per_iter']:.3f} | {r['images_per_s']:.2f} "
              f"| {r['peak_rss_mib']:.0f} | {gpu} |")


if __name__ == "__main__":
    main()

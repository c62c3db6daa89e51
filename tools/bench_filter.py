"""Filtering benchmark (issue 4 targets; results go in the README).

1. Scoring throughput of the ResNet-18 discriminator at 224x224, fp32, batch 64, with 1 and 2 torch
   threads (images/s; target >= 25 per core).
2. Per strategy on a real source (default ../shared/data/bcss-wsss-mini): train the discriminator
   (paper settings, 5 epochs, 1,000 generated negatives; wall time on this machine), then filter
   until --kept samples are kept: held-out accuracy/precision/recall/F1/ROC-AUC, acceptance rate,
   the scorer's rate inside the loop and the time it spent waiting for generation.

    OMP_NUM_THREADS=1 python tools/bench_filter.py [--source DIR] [--kept 300] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "bcss-wsss-mini"


def scoring_rate(threads: int, batch: int = 64, size: int = 224, repeats: int = 3, folded: bool = True) -> float:
    """Images/s of the discriminator as the filter runs it (BatchNorm folded into the convolutions)."""
    import torch

    from hisyngen.filtering.model import fold_batchnorm
    from hisyngen.filtering.train import seeded_model

    torch.set_num_threads(threads)
    model = seeded_model(0).eval()
    model = (fold_batchnorm(model) if folded else model).to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
    best = 0.0
    with torch.inference_mode():
        model(images[:8])
        for _ in range(repeats):
            start = time.perf_counter()
            model(images)
            best = max(best, batch / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--strategies", default="mosaic,bezier")
    parser.add_argument("--kept", type=int, default=300, help="samples to keep per strategy")
    parser.add_argument("--max-attempts", type=int, default=4096, help="candidates scored at most per strategy")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--negatives", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training and filtering")
    parser.add_argument("--skip-training", action="store_true", help="only measure scoring throughput")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="keep the discriminators and filter outputs here (default: a deleted temporary folder)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    results: dict = {"scoring": {}, "strategies": {}}
    for threads in (1, 2):
        for folded in (False, True):  # interleaved, so both see the same machine
            key = f"{threads}{'-folded' if folded else ''}"
            results["scoring"][key] = scoring_rate(threads, folded=folded)
            print(f"scoring, {key} thread(s): {results['scoring'][key]:.1f} img/s", file=sys.stderr)
    if not args.skip_training:
        from hisyngen.filtering.filter import FilterStopped, filter_corpus
        from hisyngen.filtering.train import TrainConfig, train_filter
        from hisyngen.sources import open_source
        from hisyngen.synthesis import make_strategy

        torch.set_num_threads(args.threads)
        source = open_source(args.source)
        work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-filter-", dir=args.workdir))
        work.mkdir(parents=True, exist_ok=True)
        try:
            for name in args.strategies.split(","):
                strategy = make_strategy(name)
                start = time.perf_counter()
                report = train_filter(source, strategy, work / f"disc-{name}", TrainConfig(epochs=args.epochs),
                                      negatives=args.negatives, cache_dir=work / "cache", progress=True)
                train_seconds = time.perf_counter() - start
                # Acceptance can be tiny (the paper: 27 of 50,000 for WSSS4LUAD Mosaic): score at most
                # --max-attempts candidates and report the rate either way.
                try:
                    summary = filter_corpus(source, strategy, work / f"disc-{name}", work / f"kept-{name}", args.kept,
                                            workers=1, cache_dir=work / "cache", progress=True,
                                            max_attempts=args.max_attempts)
                except FilterStopped as stop:
                    summary = stop.summary
                loop = summary.to_dict()
                results["strategies"][name] = {
                    "train_seconds": round(train_seconds, 1), "split": report["split"],
                    "batch_size_used": report["batch_size_used"], "heldout": report["heldout"],
                    "best_epoch": report["best_epoch"], "curve": report["curve"],
                    "kept": summary.kept, "attempted": summary.attempted,
                    "acceptance_rate": round(summary.acceptance_rate, 5), "reached_count": summary.kept >= args.kept,
                    "loop_seconds": loop["seconds"], "scoring_rate": loop["scoring_rate"],
                    "generation_wait_seconds": loop["generation_wait_seconds"],
                }
                print(json.dumps(results["strategies"][name]), file=sys.stderr)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)

    print(f"\nsource: {args.source} · {os.cpu_count()} CPUs · torch {torch.__version__}\n")
    print("| discriminator scoring, 224x224 fp32 batch 64 | eager | BatchNorm folded (what `filter` runs) |")
    print("|---|---|---|")
    for threads in (1, 2):
        print(f"| {threads} thread{'s' if threads > 1 else ''} | {results['scoring'][str(threads)]:.1f} "
              f"| {results['scoring'][f'{threads}-folded']:.1f} |")
    if results["strategies"]:
        print(f"\n| strategy | train ({args.epochs} epochs, {args.threads} threads) | train / held-out (real + synthetic) "
              "| held-out accuracy | precision | recall | F1 | ROC-AUC | acceptance | scorer rate in loop | waiting for generation |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, r in results["strategies"].items():
            h, s = r["heldout"], r["split"]
            print(f"| {name} | {r['train_seconds'] / 60:.1f} min | {s['train']['real']}+{s['train']['synthetic']} / "
                  f"{s['val']['real']}+{s['val']['synthetic']} | {h['accuracy']:.1%} | {h['precision']:.1%} "
                  f"| {h['recall']:.1%} | {h['f1']:.1%} | {h['roc_auc']:.3f} | {r['kept']} / {r['attempted']} = "
                  f"{r['acceptance_rate']:.2%} | {r['scoring_rate']} img/s | "
                  + f"{r['generation_wait_seconds']:.1f} s of {r['loop_seconds']:.0f} s |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

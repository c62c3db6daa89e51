"""Export throughput and memory benchmark (issue 5 target; results go in the README).

Synthesizes (or reuses) Mosaic + Bezier corpora of 224x224 samples from a source (default:
../shared/data/bcss-wsss-mini), then exports them with ``hisyngen export`` for each size in a fresh
process and reports samples/s and the process's peak RSS. Every export also carries the source's
real splits (bcss-wsss-mini: 266 images), counted in the samples. Streaming means the peak RSS must
not grow with the sample count.

Run with OMP_NUM_THREADS=1 on an otherwise idle machine::

    OMP_NUM_THREADS=1 python tools/bench_export.py [--sizes 1000,10000] [--format hf] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "bcss-wsss-mini"
STRATEGIES = ("mosaic", "bezier")


def corpora_for(size: int, source: Path, workdir: Path, workers: int) -> list[Path]:
    """Corpora of ``size`` samples in all (split evenly over the strategies), synthesized once."""
    from hisyngen.corpus import synthesize
    from hisyngen.sources import open_source
    from hisyngen.synthesis import make_strategy

    src = open_source(source)
    folders = []
    for i, name in enumerate(STRATEGIES):
        count = size // len(STRATEGIES) + (1 if i < size % len(STRATEGIES) else 0)
        folder = workdir / f"{name}-{count}"
        if not (folder / "manifest.jsonl").is_file():
            print(f"synthesizing {folder} ...", file=sys.stderr)
            synthesize(src, make_strategy(name), folder, count, seed=0, workers=workers, cache_dir=workdir / "cache")
        folders.append(folder)
    return folders


def child(args: argparse.Namespace) -> None:
    """One export in this (fresh) process; prints a JSON line."""
    from hisyngen.export import export_dataset
    from hisyngen.sources import open_source

    corpora = [Path(p) for p in args.corpora]
    out = Path(args.out)
    source = open_source(args.source)
    start = time.perf_counter()
    summary = export_dataset(corpora, source, args.format, out, overwrite=True)
    seconds = time.perf_counter() - start
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before walking the output below
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    samples = sum(summary.counts.values())
    print(json.dumps({"samples": samples, "synthetic": summary.counts["train"], "seconds": seconds,
                      "rate": samples / seconds, "peak_rss_mb": peak_rss_mb, "output_mb": size / 1e6}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--sizes", default="1000,10000", help="Synthetic sample counts, comma-separated.")
    parser.add_argument("--format", choices=["hf", "mmseg"], default="hf")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hisyngen-bench-export"),
                        help="Where corpora are synthesized (kept for reruns) and exports written.")
    parser.add_argument("--workers", type=int, default=2, help="Synthesis workers (the export is one process).")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--corpora", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        corpora = corpora_for(size, args.source, args.workdir, args.workers)
        out = args.workdir / f"export-{args.format}-{size}"
        result = subprocess.run(
            [sys.executable, __file__, "--child", "--source", str(args.source), "--format", args.format,
             "--out", str(out), "--corpora", *map(str, corpora)],
            capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        shutil.rmtree(out)
    print(f"Export `--format {args.format}` of 224x224 Mosaic+Bezier corpora plus the source's real splits "
          f"({args.source.name}), one process:\n")
    print("| synthetic | all samples | seconds | samples/s | peak RSS (MB) | output (MB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['synthetic']:,} | {r['samples']:,} | {r['seconds']:.1f} | {r['rate']:.0f} | "
              f"{r['peak_rss_mb']:.0f} | {r['output_mb']:.0f} |")


if __name__ == "__main__":
    main()

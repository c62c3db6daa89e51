"""Wall time and peak memory of `hisyngen build` (issue 7 target; results go in the README).

Runs the real command in a fresh process on a source (default ../shared/data/bcss-wsss-mini) with
--count kept samples per strategy (default 1,000) and reports per-stage times from the build's own
stage markers, the total wall time, and the peak RSS of the largest process (the build or one of its
workers).

    python tools/bench_build.py [--source DIR] [--count 1000] [--out DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "bcss-wsss-mini"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--out", default=None, help="build folder (default: a temporary one, deleted unless --keep)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `hisyngen build` options")
    args = parser.parse_args()

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-build-")) / "build"
    argv = [sys.executable, "-m", "hisyngen", "build", args.source, "--out", str(out), "--count", str(args.count),
            "--json", *args.extra]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"build failed:\n{proc.stderr[-3000:]}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = json.loads(proc.stdout)
    stages = {p.stem: json.loads(p.read_text()).get("seconds", 0.0) for p in sorted((out / ".stages").glob("*.json"))}

    print(f"\n`hisyngen build {args.source} --count {args.count}{''.join(' ' + a for a in args.extra)}` on {os.cpu_count()} CPUs: "
          f"wall {wall / 60:.1f} min, peak RSS {peak_mb:.0f} MB (largest single process)\n")
    print("| stage | seconds |")
    print("|---|---|")
    order = ["inspect"] + [s for s in stages if s not in ("inspect",)]
    for stage in order:
        if stage in stages:
            print(f"| {stage} | {stages[stage]:.0f} |")
    print(f"| **total (wall)** | **{wall:.0f}** |")
    print("\n| strategy | kept | attempted | acceptance | discriminator held-out accuracy | realism 2-sample accuracy |")
    print("|---|---|---|---|---|---|")
    for name, s in summary["strategies"].items():
        d, r = s["discriminator"] or {}, s["realism"] or {}
        cells = [f"{v:.1%}" if v is not None else "-" for v in (d.get("accuracy"), r.get("c2st_accuracy"))]
        print(f"| {name} | {s['kept']} | {s['attempted']} | {s['acceptance_rate']:.1%} | " + " | ".join(cells) + " |")
    print(json.dumps({"wall_seconds": round(wall, 1), "peak_rss_mb": round(peak_mb), "stages": stages}), file=sys.stderr)
    if not args.keep and not args.out:
        shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()

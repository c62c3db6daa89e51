"""Synthesis throughput and memory benchmark (issue 3 targets; results go in the README).

Per strategy, on the single-tissue patches of a source (default: ../shared/data/bcss-wsss-mini):

* in memory: samples/s of ``strategy.generate`` with the pool pre-loaded, one process;
* written: samples/s of the corpus writer (generation + PNG image + palette mask + manifest),
  with 1 and 2 workers;
* PNG floor: samples/s of encoding and writing (atomically) an image + mask pair alone, measured in
  the same run on the same samples - the cost no writer can avoid;
* peak RSS of a whole ``synthesize`` run in a fresh process for 1,000 and 10,000 samples.

Run with OMP_NUM_THREADS=1 on an otherwise idle machine::

    OMP_NUM_THREADS=1 python tools/bench_synthesis.py [--source DIR] [--strategies mosaic,bezier]

``--options stain=reinhard,feather=3`` (repeatable) measures only the in-memory rate of each
strategy plain and with each set of strategy parameters, interleaved in ``--rounds`` rounds
(issue 18: the cost of the realism options), and prints medians and ranges.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "bcss-wsss-mini"
REFERENCE = {"mosaic": 51.0, "bezier": 168.0}  # reference implementation, this machine (issue 3)


def in_memory_rate(pack, name: str, count: int, params: dict | None = None, clock=time.perf_counter) -> float:
    from hisyngen.synthesis import make_strategy, sample_rng

    strategy = make_strategy(name, params)
    for i in range(20):  # warm-up
        strategy.generate(pack, sample_rng(0, name, 10_000_000 + i))
    start = clock()
    for i in range(count):
        strategy.generate(pack, sample_rng(0, name, i))
    return count / (clock() - start)


def png_floor_rate(pack_folder: str, spec_dict: dict, name: str, count: int, folder: str) -> float:
    """Encode + atomically write image and mask of pre-generated samples (one process)."""
    import cv2

    from hisyngen.imageio import atomic_write_bytes, encode_mask_png, encode_rgb_png
    from hisyngen.sources.pools import PoolPack
    from hisyngen.spec import DatasetSpec
    from hisyngen.synthesis import make_strategy, sample_rng

    cv2.setNumThreads(1)
    pack = PoolPack(Path(pack_folder)).preload()
    strategy = make_strategy(name)
    samples = [strategy.generate(pack, sample_rng(0, name, i)) for i in range(50)]
    palette = DatasetSpec.from_dict(spec_dict).mask_palette()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i in range(count):
        sample = samples[i % len(samples)]
        atomic_write_bytes(out / f"i{i}.png", encode_rgb_png(sample.image))
        atomic_write_bytes(out / f"m{i}.png", encode_mask_png(sample.mask, palette))
    return count / (time.perf_counter() - start)


def _floor_job(args: tuple) -> float:
    return png_floor_rate(*args)


def png_floor_parallel(pack_folder: str, spec_dict: dict, name: str, count: int, folder: Path, processes: int) -> float:
    """Total samples/s of ``processes`` independent floor loops run at once (what the hardware allows)."""
    import multiprocessing

    jobs = [(pack_folder, spec_dict, name, count, str(folder / f"p{i}")) for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return sum(pool.map(_floor_job, jobs))


def written_rate(source, name: str, count: int, workers: int, folder: Path, cache: Path,
                 params: dict | None = None) -> float:
    from hisyngen.corpus import synthesize
    from hisyngen.synthesis import make_strategy

    out = folder / f"{name}-w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    synthesize(source, make_strategy(name, params), out, count, seed=0, workers=workers, cache_dir=cache)
    return count / (time.perf_counter() - start)


def peak_rss_mb(source_root: str, name: str, count: int, workers: int, folder: Path, cache: Path) -> dict[str, float]:
    """Peak RSS (MB) of the main process and of the largest worker, in a fresh interpreter."""
    out = folder / f"rss-{name}-{count}"
    shutil.rmtree(out, ignore_errors=True)
    code = (
        "import json, resource, sys\n"
        "from hisyngen.corpus import synthesize\n"
        "from hisyngen.sources import open_source\n"
        "from hisyngen.synthesis import make_strategy\n"
        f"synthesize(open_source({source_root!r}), make_strategy({name!r}), {str(out)!r}, {count}, workers={workers},"
        f" cache_dir={str(cache)!r})\n"
        "print(json.dumps([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    main, child = json.loads(result.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return {"main": main / 1024, "worker": child / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--strategies", default="mosaic,bezier")
    parser.add_argument("--memory-count", type=int, default=2000, help="samples for the in-memory rate")
    parser.add_argument("--write-count", type=int, default=1000, help="samples for the written rates")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of floor/writer measurements")
    parser.add_argument("--rss-counts", default="1000,10000")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: system temp)")
    parser.add_argument("--options", action="append", default=[], metavar="K=V,K=V",
                        help="compare the in-memory rate with these strategy parameters against none (repeatable)")
    parser.add_argument("--written", action="store_true",
                        help="for --options: also the corpus writer's rate (1 worker, --write-count samples, wall clock)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="for --options: wall-clock time, or this process' CPU time (steadier on a shared machine)")
    args = parser.parse_args()

    import cv2

    from hisyngen.sources import build_pool_pack, open_source

    cv2.setNumThreads(1)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("warning: set OMP_NUM_THREADS=1 for comparable numbers", file=sys.stderr)
    source = open_source(args.source)
    if args.options:
        compare_options(source, args)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-synth-", dir=args.workdir))
    cache = work / "cache"
    try:
        pack, _ = build_pool_pack(source, cache_dir=cache)
        pack.preload()
        results = []
        for name in args.strategies.split(","):
            row: dict = {"strategy": name}
            row["memory"] = in_memory_rate(pack, name, args.memory_count)
            # This machine's speed drifts (shared host): interleave the floor and writer measurements
            # in rounds and keep the medians, so both sides of each ratio see the same conditions.
            floor_args = (str(pack.folder), source.spec.to_dict(), name, min(args.write_count, 500))
            rounds: dict[str, list[float]] = {"floor": [], "written_w1": [], "floor_p2": [], "written_w2": []}
            for r in range(args.rounds):
                rounds["floor"].append(png_floor_rate(*floor_args, str(work / f"floor-{name}-{r}")))
                rounds["written_w1"].append(written_rate(source, name, args.write_count, 1, work, cache))
                rounds["floor_p2"].append(png_floor_parallel(*floor_args, work / f"floor2-{name}-{r}", 2))
                rounds["written_w2"].append(written_rate(source, name, args.write_count, 2, work, cache))
                shutil.rmtree(work / f"floor-{name}-{r}", ignore_errors=True)
                shutil.rmtree(work / f"floor2-{name}-{r}", ignore_errors=True)
            for key, values in rounds.items():
                row[key] = sorted(values)[len(values) // 2]
                row[key + "_all"] = [round(v, 1) for v in values]
            if not args.skip_rss:
                for count in (int(c) for c in args.rss_counts.split(",")):
                    row[f"rss_{count}"] = peak_rss_mb(args.source, name, count, 2, work, cache)
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nsource: {args.source} · {os.cpu_count()} CPUs · OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}\n")
    print("| strategy | in memory (img/s) | vs reference | written, 1 worker | PNG floor, 1 process | floor / written "
          "| written, 2 workers | PNG floor, 2 processes | floor / written (2) | scaling 1->2: ours / hardware |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ref = REFERENCE.get(r["strategy"])
        speedup = f"{r['memory'] / ref:.1f}x ({ref:.0f}/s)" if ref else "-"
        print(f"| {r['strategy']} | {r['memory']:.0f} | {speedup} | {r['written_w1']:.0f} | {r['floor']:.0f} "
              f"| {r['floor'] / r['written_w1']:.2f}x | {r['written_w2']:.0f} | {r['floor_p2']:.0f} "
              f"| {r['floor_p2'] / r['written_w2']:.2f}x | {r['written_w2'] / r['written_w1']:.2f}x / "
              f"{r['floor_p2'] / r['floor']:.2f}x |")
    if not args.skip_rss:
        counts = [int(c) for c in args.rss_counts.split(",")]
        print("\n| strategy | " + " | ".join(f"peak RSS {c:,} samples (main / worker MB)" for c in counts) + " | growth |")
        print("|---|" + "---|" * (len(counts) + 1))
        for r in results:
            cells = [f"{r[f'rss_{c}']['main']:.0f} / {r[f'rss_{c}']['worker']:.0f}" for c in counts]
            growth = max(r[f"rss_{counts[-1]}"][k] - r[f"rss_{counts[0]}"][k] for k in ("main", "worker"))
            print(f"| {r['strategy']} | " + " | ".join(cells) + f" | {growth:+.1f} MB |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def compare_options(source, args) -> None:
    """In-memory rates plain and with each ``--options`` set, interleaved round by round."""
    import statistics

    from hisyngen.sources import build_pool_pack

    variants = [{}] + [dict(item.split("=", 1) for item in options.split(",")) for options in args.options]
    work = Path(tempfile.mkdtemp(prefix="bench-synth-", dir=args.workdir))
    try:
        pack, _ = build_pool_pack(source, cache_dir=work / "cache")
        pack.preload()
        results = []
        for name in args.strategies.split(","):
            rates: list[list[float]] = [[] for _ in variants]
            written: list[list[float]] = [[] for _ in variants]
            for _ in range(args.rounds):
                for k, params in enumerate(variants):
                    clock = time.process_time if args.clock == "cpu" else time.perf_counter
                    rates[k].append(in_memory_rate(pack, name, args.memory_count, params, clock))
                    if args.written:
                        written[k].append(written_rate(source, name, args.write_count, 1, work, work / "cache", params))
            for k, params in enumerate(variants):
                ratios = [a / b for a, b in zip(rates[k], rates[0])]
                row = {"strategy": name, "options": params, "median": statistics.median(rates[k]),
                       "range": [min(rates[k]), max(rates[k])], "ratio_median": statistics.median(ratios),
                       "ratio_range": [min(ratios), max(ratios)], "rounds": [round(r, 1) for r in rates[k]]}
                if args.written:
                    written_ratios = [a / b for a, b in zip(written[k], written[0])]
                    row.update(written_median=statistics.median(written[k]),
                               written_ratio_median=statistics.median(written_ratios),
                               written_ratio_range=[min(written_ratios), max(written_ratios)])
                results.append(row)
                print(json.dumps(row), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nsource: {args.source} · {os.cpu_count()} CPUs · OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} · "
          f"{args.rounds} interleaved rounds of {args.memory_count} samples · {args.clock} clock\n")
    extra = " written, 1 worker, img/s | vs plain |" if args.written else ""
    print("| strategy | options | in memory, img/s: median (range) | vs plain, same round: median (range) |" + extra)
    print("|---|---|---|---|" + ("---|---|" if args.written else ""))
    for r in results:
        options = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "none (plain)"
        cells = ""
        if args.written:
            cells = (f" {r['written_median']:.0f} | {r['written_ratio_median']:.2f} "
                     f"({r['written_ratio_range'][0]:.2f}-{r['written_ratio_range'][1]:.2f}) |")
        print(f"| {r['strategy']} | {options} | {r['median']:.0f} ({r['range'][0]:.0f}-{r['range'][1]:.0f}) "
              f"| {r['ratio_median']:.2f} ({r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f}) |" + cells)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

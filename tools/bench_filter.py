"""Filtering benchmark (issue 4 and issue 16 targets; results go in the README).

1. Scoring and training-step throughput of the ResNet-18 discriminator at 224x224, batch 64, one
   torch thread, per precision (fp32, bf16 autocast): each (case, precision) runs in its own process
   (peak RSS is per process) and the precisions alternate within each of --rounds rounds, so both
   see the same machine; medians and ranges. Scoring is what `filter` runs (BatchNorm folded,
   channels-last); the training step is `fit`'s inner step (flips, forward, loss, backward, Adam).
2. --agreement DISC[,DISC[@fp32]...]: decisions of discriminators and precisions on held-out images (the
   source's val+test images, never trained on, and fresh candidates of the strategy): agreement of
   p_real > 0.5, accuracy, the kept sets of rank selection, and the largest score difference. The
   first model is scored in fp32 and bf16; further ones (e.g. the same settings trained in bf16, or
   in fp32 with another seed: how much two trainings disagree anyway) in bf16 or as DISC@fp32.
3. Per strategy on a real source (default ../shared/data/bcss-wsss-mini): train the discriminator
   (paper settings, 5 epochs, 1,000 generated negatives; wall time on this machine), then filter
   until --kept samples are kept: held-out accuracy/precision/recall/F1/ROC-AUC, acceptance rate,
   the scorer's rate inside the loop and the time it spent waiting for generation.

    OMP_NUM_THREADS=1 python tools/bench_filter.py --skip-training            # 1 only
    OMP_NUM_THREADS=1 python tools/bench_filter.py --agreement DISC_FP32,DISC_BF16 -s bezier --candidates 2000
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


PRECISIONS = ("fp32", "bf16")
CASES = ("score", "train-step", "epoch")
"""score and train-step: one batch of random images, compute only; epoch: one epoch of discriminator
training on --source (the paper's settings, Bezier negatives generated on the fly as `filter-train`
does, validation and BatchNorm recalibration included) in seconds."""


def run_case(case: str, precision: str, batch: int = 64, size: int = 224, warmup: int = 1, timed: int = 4,
             source: str = str(DEFAULT_SOURCE)) -> dict:
    """Time ``case`` in this process at ``precision`` on one thread; images/s and peak RSS."""
    import resource

    import torch

    if case == "epoch":
        from hisyngen.filtering.train import TrainConfig, train_filter
        from hisyngen.sources import open_source
        from hisyngen.synthesis import make_strategy

        torch.set_num_threads(1)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            report = train_filter(open_source(source), make_strategy("bezier"), Path(tmp) / "disc",
                                  TrainConfig(epochs=1, precision=precision), negatives=1000, cache_dir=Path(tmp) / "cache")
            seconds = time.perf_counter() - start
        images = report["split"]["train"]["real"] + report["split"]["train"]["synthetic"]
        return dict(case=case, precision=precision, batch=report["batch_size_used"], size=224,
                    images_per_s=images / seconds, seconds=seconds,
                    peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    from hisyngen.filtering.model import fold_batchnorm
    from hisyngen.filtering.loader import _random_flips
    from hisyngen.filtering.train import seeded_model
    from hisyngen.precision import autocast

    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 2, (batch,), generator=generator)
    model = seeded_model(0).to(memory_format=torch.channels_last)
    times = []
    if case == "score":  # what `filter` runs
        model = fold_batchnorm(model.eval()).to(memory_format=torch.channels_last)
        with torch.inference_mode():
            for _ in range(warmup + timed):
                start = time.perf_counter()
                with autocast(precision, cpu):
                    torch.softmax(model(images).float(), dim=1)
                times.append(time.perf_counter() - start)
    else:  # one optimiser step of `fit`
        model.train()
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        for _ in range(warmup + timed):
            start = time.perf_counter()
            flipped = _random_flips(images, generator)
            with autocast(precision, cpu):
                loss = loss_fn(model(flipped).float(), labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            times.append(time.perf_counter() - start)
    per_batch = median(times[warmup:])
    return dict(case=case, precision=precision, batch=batch, size=size, images_per_s=batch / per_batch,
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def precision_rounds(precisions: list[str], rounds: int, cases: list[str], source: str) -> list[dict]:
    """Every case at every precision, each in a fresh process, the precisions alternating per round."""
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    rows = []
    for case in cases:
        for round_ in range(rounds):
            for precision in (precisions if round_ % 2 == 0 else precisions[::-1]):
                proc = subprocess.run([sys.executable, __file__, "--case", case, "--precisions", precision,
                                       "--source", source],
                                      env=env, capture_output=True, text=True)
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                if proc.returncode or line is None:
                    sys.exit(f"{case} ({precision}) failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
                rows.append(dict(json.loads(line[7:]), round=round_))
                print(f"{case} {precision} round {round_ + 1}: {rows[-1]['images_per_s']:.1f} img/s, "
                      f"{rows[-1]['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    return rows


def render_precisions(rows: list[dict], precisions: list[str]) -> list[str]:
    """Markdown: per (case, precision) median [range] images/s, the bf16 speed-up as the median of
    each round's ratio, and peak RSS."""
    lines = ["| discriminator, 224 px, 1 thread | precision | batch | images/s, median [range] "
             "| bf16 speed-up, median [range] | peak RSS (MiB) |", "|---|---|---|---|---|---|"]
    for case in CASES:
        by = {p: [r for r in rows if r["case"] == case and r["precision"] == p] for p in precisions}
        for p in precisions:
            rates = [r["images_per_s"] for r in by[p]]
            if not rates:
                continue
            speed = "-"
            if p != "fp32" and by.get("fp32"):
                fp32 = {r["round"]: r["images_per_s"] for r in by["fp32"]}
                ratios = [r["images_per_s"] / fp32[r["round"]] for r in by[p] if r["round"] in fp32]
                speed = f"{median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
            name = {"score": "scoring (what `filter` runs)", "train-step": "training step (`fit`)",
                    "epoch": "training epoch, bcss-wsss-mini Bezier (images/s of the epoch's training set)"}[case]
            lines.append(f"| {name} | {p} | {by[p][0]['batch']} | {median(rates):.1f} [{min(rates):.1f}-{max(rates):.1f}] | {speed} "
                         f"| {median([r['peak_rss_mib'] for r in by[p]]):.0f} |")
    return lines


# --- agreement of precisions (issue 16) --------------------------------------------------------

def heldout_scores(source_dir: str, strategy_name: str, models: list[tuple[str, str]], candidates: int,
                   cache_dir: str | None = None, batch: int = 64, seed: int = 1) -> dict:
    """p_real of each (model dir, precision) on the source's val+test images and ``candidates``
    fresh filter candidates of seed ``seed`` (the quality benchmark filtered seed 0; no discriminator trains
    on the filter stream), scored as `filter` scores them."""
    import numpy as np
    import torch

    from hisyngen.filtering.data import fit_size
    from hisyngen.filtering.model import fold_batchnorm
    from hisyngen.filtering.select import stratum
    from hisyngen.filtering.train import load_discriminator
    from hisyngen.imageio import read_rgb
    from hisyngen.precision import autocast
    from hisyngen.sources import open_source
    from hisyngen.sources.pools import build_pool_pack
    from hisyngen.synthesis import make_strategy, sample_rng

    source = open_source(source_dir)
    first_meta = load_discriminator(models[0][0])[1]
    strategy = make_strategy(strategy_name, first_meta["strategy_params"], classes=source.spec.classes)
    size = first_meta["image_size"]
    pack, _ = build_pool_pack(source, cache_dir=cache_dir)  # None: hisyngen's user cache
    real = [fit_size(read_rgb(r.path), size) for r in source.val + source.test]
    synthetic, strata = [], []
    n = source.spec.num_classes
    for index in range(candidates):
        sample = strategy.generate(pack, sample_rng(seed, strategy.name, index, "filter"))
        synthetic.append(fit_size(sample.image, size))
        counts = sample.class_pixels(n)  # the manifest's `fractions`, which `filter` stratifies on
        strata.append(stratum([round(int(c) / sample.mask.size, 6) for c in counts[:n]]))
    images = real + synthetic
    cpu = torch.device("cpu")
    scores = {}
    for folder, precision in models:
        model = fold_batchnorm(load_discriminator(folder, strategy=strategy_name)[0]).to(memory_format=torch.channels_last)
        parts = []
        with torch.inference_mode():
            for start in range(0, len(images), batch):
                x = torch.from_numpy(np.stack(images[start:start + batch]))
                with autocast(precision, cpu):
                    logits = model(x)
                parts.append(torch.softmax(logits.float(), dim=1)[:, 1].numpy())
        scores[(folder, precision)] = np.concatenate(parts)
        print(f"scored {len(images)} images with {folder} in {precision}", file=sys.stderr)
    return dict(real=len(real), synthetic=len(synthetic), strata=strata, scores=scores)


def agreement_rows(result: dict, oversample: float = 5.0) -> list[str]:
    """Markdown: each (model, precision) against the first model in fp32."""
    import numpy as np

    from hisyngen.filtering.select import select_rank

    n_real = result["real"]
    labels = np.r_[np.ones(n_real), np.zeros(result["synthetic"])]
    keep = max(1, int(result["synthetic"] / oversample))
    (ref_key, ref), *others = result["scores"].items()
    ref_kept = set(select_rank(result["strata"], ref[n_real:].tolist(), keep))
    lines = [f"held-out: {n_real} real (val+test) + {result['synthetic']} fresh candidates; rank selection keeps "
             f"{keep} of the candidates", "",
             "| model, precision | accuracy (real / candidates) | decisions agreeing with the first, fp32 "
             "| same kept set (rank) | largest score difference |", "|---|---|---|---|---|"]
    for key, p in [(ref_key, ref), *others]:
        right = (p > 0.5) == (labels == 1)
        agree = float(np.mean((p > 0.5) == (ref > 0.5)))
        kept = set(select_rank(result["strata"], p[n_real:].tolist(), keep))
        lines.append(f"| {key[0]}, {key[1]} | {right.mean():.2%} ({right[:n_real].mean():.1%} / "
                     f"{right[n_real:].mean():.1%}) | {agree:.2%} "
                     f"| {len(kept & ref_kept) / keep:.1%} | {float(np.max(np.abs(p - ref))):.4f} |")
    return lines


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
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16 (default both)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating precision rounds (medians over them)")
    parser.add_argument("--agreement", metavar="DISC[,DISC[@PRECISION]...]",
                        help="compare decisions on held-out images: the first discriminator in fp32 and bf16, "
                             "the others in bf16 (or @fp32); then exit")
    parser.add_argument("-s", "--strategy", default="bezier", help="strategy of the --agreement discriminators")
    parser.add_argument("--candidates", type=int, default=2000, help="fresh candidates for --agreement")
    parser.add_argument("--cache-dir", default=None, help="pool cache for --agreement (default: hisyngen's)")
    parser.add_argument("--cases", default="score,train-step",
                        help=f"comma-separated precision cases of {', '.join(CASES)} (epoch: minutes each)")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not precisions or any(p not in PRECISIONS for p in precisions):
        parser.error("--precisions takes fp32 and/or bf16")
    if args.case:
        print("RESULT " + json.dumps(run_case(args.case, precisions[0], source=args.source)))
        return
    if args.agreement:
        folders = [f.strip() for f in args.agreement.split(",") if f.strip()]
        # DISC@PRECISION scores a further model in that precision (default bf16)
        models = [(folders[0], "fp32"), (folders[0], "bf16")] + [
            (f.rpartition("@")[0], f.rpartition("@")[2]) if "@" in f else (f, "bf16") for f in folders[1:]]
        if any(p not in PRECISIONS for _, p in models):
            parser.error("--agreement: DISC@PRECISION takes fp32 or bf16")
        print("\n".join(agreement_rows(heldout_scores(args.source, args.strategy, models, args.candidates,
                                                     cache_dir=args.cache_dir))))
        return

    import torch

    from hisyngen.precision import cpu_bf16_flags

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or any(c not in CASES for c in cases):
        parser.error(f"--cases takes {', '.join(CASES)}")
    results: dict = {"precision_rounds": precision_rounds(precisions, args.rounds, cases, args.source), "strategies": {}}
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

    print(f"\nsource: {args.source} · {os.cpu_count()} CPUs · torch {torch.__version__} · "
          f"native bf16 flags: {', '.join(cpu_bf16_flags()) or 'none'}\n")
    print("\n".join(render_precisions(results["precision_rounds"], precisions)))
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

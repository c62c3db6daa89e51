#!/usr/bin/env python
"""Which stratum definition keeps a filtered corpus' class mix? (issue 17)

Scores ``--oversample x --count`` fresh candidates of one strategy once with a trained
discriminator, then selects ``--count`` of them (rank mode) under each stratum definition and prints
each class' pixel share in the kept samples against all candidates, and the largest deviation:

    none               the most realistic count candidates (no quotas)
    dominant           quotas per dominant class
    present            quotas per set of classes present
    dominant+present   quotas per (dominant class, classes present): hisyngen's definition

    OMP_NUM_THREADS=1 python tools/bench_strata.py --source ../shared/data/bcss-wsss-mini \\
        --strategy bezier --model /work/quality/bcss/discriminators/bezier --count 100 --size 224
"""

from __future__ import annotations

import argparse

import numpy as np


def strata_of(fractions: list[float], kind: str) -> str:
    from hisyngen.filtering.select import stratum

    present = [c for c, f in enumerate(fractions) if f > 0]
    full = stratum(fractions)
    if kind == "none":
        return "all"
    if kind == "dominant":
        return full.split(":")[0]
    if kind == "present":
        return "+".join(map(str, present))
    return full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True)
    parser.add_argument("--strategy", required=True)
    parser.add_argument("--model", required=True, help="a filter-train folder for this strategy")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--oversample", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from hisyngen.corpus import SampleWriter
    from hisyngen.filtering.data import fit_size
    from hisyngen.filtering.model import REAL, fold_batchnorm
    from hisyngen.filtering.select import pixel_shares, select_rank
    from hisyngen.filtering.train import load_discriminator
    from hisyngen.sources import open_source
    from hisyngen.sources.pools import build_pool_pack
    from hisyngen.synthesis import make_strategy

    source = open_source(args.source)
    strategy = make_strategy(args.strategy, {"size": args.size, "allow_missing_classes": True}, classes=source.spec.classes)
    model, meta = load_discriminator(args.model, strategy=strategy.name, classes=source.spec.classes)
    model = fold_batchnorm(model).eval()
    pack, _ = build_pool_pack(source)
    writer = SampleWriter("/nonexistent", str(pack.folder), strategy.name, strategy.params(), args.seed,
                          source.spec.to_dict(), "filter")
    budget = int(np.ceil(args.count * args.oversample))
    rows, scores = [], []
    for start in range(0, budget, 64):
        batch = writer.candidates((start, min(start + 64, budget)))
        images = torch.from_numpy(np.stack([fit_size(image, meta["image_size"]) for image, _ in batch]))
        with torch.inference_mode():
            p = torch.softmax(model(images).float(), dim=1)[:, REAL].numpy()
        rows += [row for _, row in batch]
        scores += [float(v) for v in p]
    c = source.spec.num_classes
    before = pixel_shares(rows, c)
    print(f"{strategy.name}, {budget} candidates scored, {args.count} kept (rank)")
    print("| strata | " + " | ".join(source.spec.classes) + " | largest deviation (pp) |")
    print("|---|" + "---|" * (c + 1))
    print("| all candidates | " + " | ".join(f"{100 * v:.1f}%" for v in before) + " | - |")
    for kind in ("none", "dominant", "present", "dominant+present"):
        kept = select_rank([strata_of(r["fractions"], kind) for r in rows], scores, args.count)
        after = pixel_shares([rows[p] for p in kept], c)
        worst = max(abs(a - b) for a, b in zip(after, before))
        print(f"| {kind} | " + " | ".join(f"{100 * v:.1f}%" for v in after) + f" | {100 * worst:.1f} |")


if __name__ == "__main__":
    main()

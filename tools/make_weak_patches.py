"""Cut weakly-labelled training windows from pixel-annotated images (how BCSS-WSSS was built from BCSS).

Example (a WSSS4LUAD-style training source from the annotated validation images, half of the
images held out whole for evaluation)::

    python tools/make_weak_patches.py ../shared/data/wsss4luad-mini out/wsss4luad-weak \\
        --split val --window 224 --stride 112 --holdout 0.5
"""

from __future__ import annotations

import argparse
import inspect
import json

from hisyngen.sources import open_source
from hisyngen.sources.weak_patches import make_weak_patches


def main() -> None:
    default = {name: p.default for name, p in inspect.signature(make_weak_patches).parameters.items()}  # one home
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="dataset with image/mask pairs")
    parser.add_argument("out", help="new dataset folder (same layout as the source)")
    parser.add_argument("--dataset", default=None, help="force the source layout")
    parser.add_argument("--split", default=default["split"], choices=["val", "test"])
    parser.add_argument("--window", type=int, default=default["window"])
    parser.add_argument("--stride", type=int, default=default["stride"])
    parser.add_argument("--min-fraction", type=float, default=default["min_fraction"],
                        help="a class counts when it covers this much")
    parser.add_argument("--max-background", type=float, default=default["max_background"],
                        help="skip windows with more background")
    parser.add_argument("--holdout", type=float, default=default["holdout"], help="share of images kept whole for evaluation")
    parser.add_argument("--seed", type=int, default=default["seed"])
    args = parser.parse_args()
    summary = make_weak_patches(open_source(args.source, dataset=args.dataset), args.out, split=args.split,
                                window=args.window, stride=args.stride, min_fraction=args.min_fraction,
                                max_background=args.max_background, holdout=args.holdout, seed=args.seed,
                                progress=True)
    print(json.dumps({k: v for k, v in summary.items() if not k.endswith("_images")}, indent=2))


if __name__ == "__main__":
    main()

"""The README's side-by-side preview of the realism options (issue 18): docs/stain-feather.png.

For Mosaic and Bezier, the same seed is synthesised from a real dataset plain and with the
options, each corpus goes through ``hisyngen preview``'s contact sheet, and the sheets are put side
by side (scaled and reduced to 128 colours so the PNG stays under 200 KB)::

    python tools/make_realism_preview.py [--source ../shared/data/bcss-wsss-mini] [--options stain=reinhard,feather=3]
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def label(sheet: np.ndarray, text: str) -> np.ndarray:
    strip = np.full((30, sheet.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, sheet], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "bcss-wsss-mini"))
    parser.add_argument("--options", default="stain=reinhard,feather=3")
    parser.add_argument("--strategies", default="mosaic,bezier")
    parser.add_argument("--count", type=int, default=2, help="samples per sheet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=0.6)
    parser.add_argument("-o", "--out", default=str(ROOT / "docs" / "stain-feather.png"))
    args = parser.parse_args()

    from hisyngen.corpus import Corpus, synthesize
    from hisyngen.preview import contact_sheet
    from hisyngen.sources import open_source
    from hisyngen.synthesis import make_strategy

    source = open_source(args.source)
    options = dict(item.split("=", 1) for item in args.options.split(","))
    work = Path(tempfile.mkdtemp(prefix="realism-preview-"))
    try:
        rows = []
        for name in args.strategies.split(","):
            sheets = []
            for params, caption in (({}, "plain (the paper)"), (options, args.options.replace(",", ", "))):
                out = work / f"{name}-{len(sheets)}"
                synthesize(source, make_strategy(name, params), out, args.count, seed=args.seed, cache_dir=work / "cache")
                sheet = contact_sheet(Corpus(out), count=args.count, columns=args.count)
                sheets.append(label(sheet, f"{name}, seed {args.seed}: {caption}"))
            gap = np.full((sheets[0].shape[0], 12, 3), 255, np.uint8)
            rows.append(np.concatenate([sheets[0], gap, sheets[1]], axis=1))
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
        grid = np.concatenate(rows, axis=0)
        grid = cv2.resize(grid, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_AREA)
        buffer = io.BytesIO()
        Image.fromarray(grid).quantize(128, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
        Path(args.out).write_bytes(buffer.getvalue())
        print(f"wrote {args.out} ({len(buffer.getvalue()) / 1024:.0f} KB, {grid.shape[1]}x{grid.shape[0]})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`hisyngen inspect`: what a source holds and what is wrong with it, as a dict and as text."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from hisyngen.errors import ImageReadError
from hisyngen.imageio import conversion_note, image_size, read_mask, read_raw, to_rgb8
from hisyngen.sources.labels import format_labels
from hisyngen.sources.layout import Problem, Record, Source

DEFAULT_MIN_POOL = 10
"""A class with fewer single-tissue sources than this gets a warning (synthesis repeats them a lot)."""


def small_pool_message(name: str, count: int, min_pool: int = DEFAULT_MIN_POOL) -> str:
    """The warning for a class with fewer than ``min_pool`` single-tissue images (inspect, synth)."""
    if not count:
        return f"class {name} has no single-tissue train image: synthesis cannot use it"
    return f"class {name} has {count} single-tissue train images (< {min_pool}); its synthetic tiles will repeat"


SKIPPED_KINDS = frozenset({"unreadable", "unparseable-name", "unparseable-labels", "all-zero-labels", "unknown-class",
                           "missing-file", "missing-mask", "orphan-mask", "duplicate-id", "bad-split"})
"""Problem kinds that mean a source file is not used (not merely noted, like ``converted``)."""


def skipped_warning(problems: list[Any], root: object, shown: int = 3) -> str | None:
    """One line naming how many source files are skipped (unreadable, unlabelled...) and the first
    ``shown`` of them, or None when none is; ``problems`` are :class:`Problem` or their dicts."""
    skipped = [p if isinstance(p, dict) else p.__dict__ for p in problems]
    skipped = [p for p in skipped if p.get("kind") in SKIPPED_KINDS]
    if not skipped:
        return None
    names = ", ".join(Path(str(p["path"])).name or str(p["path"]) for p in skipped[:shown])  # manifest rows: FILE:LINE
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    kinds = ", ".join(sorted({p["kind"] for p in skipped}))
    return (f"skipped {len(skipped)} source file{'s' if len(skipped) != 1 else ''} ({kinds}): {names}{more}; "
            f"`hisyngen inspect {root}` lists them all")


def _is_palette(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode in ("P", "PA")
    except Exception:
        return False


def _check_train(record: Record, pixels: bool) -> tuple[tuple[int, int] | None, list[Problem]]:
    """Image size and problems of one image (a full decode unless ``pixels`` is False)."""
    if not pixels:
        try:
            return image_size(record.path), []
        except ImageReadError as exc:
            return None, [Problem("unreadable", str(record.path), exc.reason)]
    try:
        raw = read_raw(record.path)
        to_rgb8(raw, record.path)
    except ImageReadError as exc:
        return None, [Problem("unreadable", str(record.path), exc.reason)]
    notes = [conversion_note(raw)] + (["palette image: expanded to RGB"] if _is_palette(record.path) else [])
    problems = [Problem("converted", str(record.path), note) for note in notes if note]
    return (raw.shape[1], raw.shape[0]), problems


def _check_pair(record: Record, source: Source) -> tuple[tuple[int, int] | None, np.ndarray | None, list[Problem]]:
    size, problems = _check_train(record, pixels=True)
    if size is None:
        return None, None, problems
    try:
        mask = read_mask(record.mask_path, source.spec)  # type: ignore[arg-type]
    except ImageReadError as exc:
        return size, None, problems + [Problem("unreadable", str(record.mask_path), exc.reason)]
    if (mask.shape[1], mask.shape[0]) != size:
        problems.append(Problem("size-mismatch", str(record.mask_path),
                                f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {size[0]}x{size[1]}"))
    histogram = np.bincount(mask.ravel(), minlength=256)
    bad = sorted(int(v) for v in set(np.flatnonzero(histogram)) - source.spec.valid_mask_values())
    if bad:
        problems.append(Problem("mask-values", str(record.mask_path),
                                f"mask values {bad} are outside the {source.spec.name} spec "
                                f"(classes 0-{source.spec.num_classes - 1}, background {source.spec.background_index}, ignore 255)"))
    return size, histogram, problems


def _size_range(sizes: list[tuple[int, int]]) -> dict[str, list[int]] | None:
    if not sizes:
        return None
    widths, heights = [s[0] for s in sizes], [s[1] for s in sizes]
    return {"width": [min(widths), max(widths)], "height": [min(heights), max(heights)]}


def inspect_source(
    source: Source,
    min_pool: int = DEFAULT_MIN_POOL,
    check_pixels: bool = True,
    workers: int = 4,
    progress: bool = False,
) -> dict[str, Any]:
    """Counts, sizes, mask statistics and warnings of ``source`` as a JSON-ready dict.

    With ``check_pixels`` every train image is fully decoded (finds truncated files); val/test
    images and masks are always decoded.
    """
    from hisyngen.progress import progress_bar as tqdm  # a bar on a terminal, log lines elsewhere

    spec = source.spec
    problems = list(source.problems)
    sizes: dict[str, list[tuple[int, int]]] = {}
    histograms: dict[str, np.ndarray] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        train = source.train
        results = pool.map(lambda r: _check_train(r, check_pixels), train)
        sizes["train"] = []
        for size, found in tqdm(results, total=len(train), desc="train images", unit="img", disable=not progress):
            problems.extend(found)
            if size is not None:
                sizes["train"].append(size)
        for split in ("val", "test"):
            records = source.splits.get(split, [])
            sizes[split] = []
            histograms[split] = np.zeros(256, np.int64)
            for size, histogram, found in tqdm(pool.map(lambda r: _check_pair(r, source), records), total=len(records),
                                               desc=f"{split} pairs", unit="pair", disable=not progress):
                problems.extend(found)
                if size is not None:
                    sizes[split].append(size)
                if histogram is not None:
                    histograms[split] += histogram

    unreadable = {p.path for p in problems if p.kind == "unreadable"}
    usable_train = [r for r in source.train if str(r.path) not in unreadable]
    combos = Counter(format_labels(r.labels) for r in usable_train if r.labels is not None)
    pools = {spec.classes[c]: 0 for c in range(spec.num_classes)}
    for record in usable_train:
        if record.is_single_tissue:
            pools[spec.classes[record.tissue]] += 1
    for name, count in pools.items():
        if count < min_pool:
            problems.append(Problem("small-pool", "", small_pool_message(name, count, min_pool)))

    def index_name(index: int) -> str:
        if index < spec.num_classes:
            return spec.classes[index]
        if index == spec.background_index:
            return "background"
        return "ignore" if index == spec.ignore_index else str(index)

    mask_histogram = {
        split: {index_name(i): int(h[i]) for i in np.flatnonzero(h)} for split, h in histograms.items() if h.any()
    }
    warning_counts = Counter(p.kind for p in problems)
    return {
        "root": str(source.root),
        "layout": source.layout,
        "dataset": spec.name,
        "classes": list(spec.classes),
        "background_index": spec.background_index,
        "images": {split: len(records) for split, records in source.splits.items()},
        "usable_train": len(usable_train),
        "label_combinations": dict(sorted(combos.items(), key=lambda kv: (-kv[1], kv[0]))),
        "single_tissue": pools,
        "multi_tissue": sum(1 for r in usable_train if r.labels is not None and sum(r.labels) >= 2),
        "image_size": {split: _size_range(s) for split, s in sizes.items() if s},
        "mask_histogram": mask_histogram,
        "warning_counts": dict(sorted(warning_counts.items())),
        "warnings": [p.__dict__ for p in problems],
    }


def render_report(report: dict[str, Any], max_warnings: int = 20) -> str:
    """Human-readable text of :func:`inspect_source`'s report."""
    classes = report["classes"]
    lines = [
        f"source      {report['root']}",
        f"layout      {report['layout']} (dataset {report['dataset']}; classes {', '.join(classes)}; "
        f"background index {report['background_index']}; ignore 255)",
        "images      " + " · ".join(f"{split} {n}" for split, n in report["images"].items()),
    ]
    if report["label_combinations"]:
        lines.append("train label combinations")
        for combo, count in report["label_combinations"].items():
            values = [int(v) for v in combo.strip("[]").split(",")]
            names = "+".join(c for c, v in zip(classes, values) if v)
            lines.append(f"  {combo:<{2 * len(classes) + 1}}  {names:<24} {count:>7}")
    lines.append("single-tissue train images per class")
    for name, count in report["single_tissue"].items():
        lines.append(f"  {name:<10} {count:>7}")
    lines.append(f"multi-tissue train images  {report['multi_tissue']}")
    if report["image_size"]:
        lines.append("image sizes (width x height)")
        for split, r in report["image_size"].items():
            lines.append(f"  {split:<6} {r['width'][0]}-{r['width'][1]} x {r['height'][0]}-{r['height'][1]}")
    for split, histogram in report["mask_histogram"].items():
        total = sum(histogram.values()) or 1
        parts = ", ".join(f"{k} {v / total:.1%}" for k, v in histogram.items())
        lines.append(f"{split} mask pixels  {parts}  ({total:,} px)")
    warnings = report["warnings"]
    if warnings:
        counts = ", ".join(f"{k} {v}" for k, v in report["warning_counts"].items())
        lines.append(f"warnings ({len(warnings)}: {counts})")
        for w in warnings[:max_warnings]:
            lines.append(f"  [{w['kind']}] " + (f"{w['path']}: " if w["path"] else "") + w["message"])
        if len(warnings) > max_warnings:
            lines.append(f"  ... {len(warnings) - max_warnings} more (use --json for all)")
    else:
        lines.append("warnings    none")
    return "\n".join(lines)

"""Does training on hisyngen output segment REAL tissue? A CPU ablation harness (issue 8).

For a source with held-out pixel masks it builds corpora, exports one MMSeg dataset per variant,
trains DeepLabV3+ (ResNet-18, no pretrained weights, ``mmseg_configs/cpu_deeplabv3plus_r18.py``)
for a FIXED number of iterations through MMSegmentation's stock train.py, then evaluates per-class
IoU, mIoU and fwIoU on the held-out masks (background excluded) and saves prediction overlays.

Variants (same iterations, same 8 synthetic images per step, same seed):

    onelabel        single-tissue patches as they are
    cutmix          CutMix baseline
    mosaic          Mosaic (unfiltered)
    bezier          Bezier (unfiltered)
    mosaic+bezier   both, unfiltered
    filtered        both, filtered by their discriminators (hisyngen's default selection: rank with
                    per-stratum quotas, class-matched discriminator training)
    full            filtered + real images with the consistency loss (8 real per step, L_reg)
    filtered-paper  both, filtered the paper's way (p_real > 0.5 until N, no quotas, unweighted training)
    full-paper      filtered-paper + real images with the consistency loss (the paper's recipe)
    unfiltered+real mosaic+bezier + real images with the consistency loss (full without the filter)

The synthetic-only variants train with L_seg + L_cls on synthetic images; ``full`` is the HisynSeg
recipe. Results are appended to a JSON file; ``--render FILE`` prints the README table.

    python tools/bench_quality.py --source ../shared/data/bcss-wsss-mini --name bcss-wsss-mini \\
        --work /work/quality/bcss --iters 300 --results docs/quality.json
    python tools/bench_quality.py --source ../shared/data/wsss4luad-mini --weak-from val --window 112 \\
        --stride 56 --name wsss4luad-mini --work /work/quality/wsss --iters 300 --results docs/quality.json
    python tools/bench_quality.py --render docs/quality.json
    python tools/bench_quality.py --class-mix /work/quality/bcss --source ../shared/data/bcss-wsss-mini
        # what each variant trains on, and what it is evaluated on
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, dict[str, Any]] = {
    "onelabel": {"corpora": ["onelabel"], "real": False},
    "cutmix": {"corpora": ["cutmix"], "real": False},
    "mosaic": {"corpora": ["mosaic"], "real": False},
    "bezier": {"corpora": ["bezier"], "real": False},
    "mosaic+bezier": {"corpora": ["mosaic", "bezier"], "real": False},
    "filtered": {"corpora": ["mosaic-filtered", "bezier-filtered"], "real": False},
    "full": {"corpora": ["mosaic-filtered", "bezier-filtered"], "real": True},
    "filtered-paper": {"corpora": ["mosaic-paper", "bezier-paper"], "real": False},
    "full-paper": {"corpora": ["mosaic-paper", "bezier-paper"], "real": True},
    "unfiltered+real": {"corpora": ["mosaic", "bezier"], "real": True},  # separates the filter from L_reg
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- data -------------------------------------------------------------------------------------

def prepare_source(args: argparse.Namespace, work: Path) -> Any:
    """The training source (the given one, or weak patches cut from its annotated split)."""
    from hisyngen.sources import open_source
    from hisyngen.sources.weak_patches import make_weak_patches

    source = open_source(args.source)
    if not args.weak_from:
        return source
    folder = work / "weak-source"
    if not (folder / "weak_patches.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        summary = make_weak_patches(source, folder, split=args.weak_from, window=args.window, stride=args.stride,
                                    min_fraction=args.min_fraction, holdout=args.holdout, seed=0)
        log(f"weak patches: {summary['windows']} windows from {len(summary['cut_images'])} images, "
            f"{len(summary['held_out_images'])} held out")
    return open_source(folder)


def eval_pairs(source: Any) -> list[Any]:
    """Held-out image/mask records: val + test of the (training) source."""
    pairs = source.val + source.test
    if not pairs:
        raise SystemExit("the source has no val/test masks to evaluate on")
    return pairs


def build_corpora(source: Any, needed: set[str], args: argparse.Namespace, work: Path) -> dict[str, Path]:
    from hisyngen.corpus import Corpus, synthesize
    from hisyngen.filtering.filter import filter_corpus
    from hisyngen.filtering.select import Selection
    from hisyngen.filtering.train import TrainConfig, train_filter
    from hisyngen.synthesis import make_strategy

    params = {"size": args.size, "allow_missing_classes": True}
    strategy_params = parse_strategy_params(args.param)
    folders = {}
    for name in sorted(needed):
        out = work / "corpora" / name
        folders[name] = out
        if name.endswith("-filtered") and args.filtered_from:
            # reuse a `hisyngen build` (its filtered corpora and discriminators) instead of retraining
            built = Path(args.filtered_from) / "corpora" / name.replace("-filtered", "")
            if Corpus(built).config.filter is None or Corpus(built).config.count != args.count:
                raise SystemExit(f"{built} is not a filtered corpus of {args.count} samples")
            folders[name] = built
            continue
        if out.is_dir() and (out / "manifest.jsonl").is_file():
            continue
        strategy_name = name.replace("-filtered", "").replace("-paper", "")
        unfiltered = not name.endswith(("-filtered", "-paper"))
        strategy = make_strategy(strategy_name, {**params, **(strategy_params if unfiltered else {})},
                                 classes=source.spec.classes)
        started = time.perf_counter()
        if name.endswith(("-filtered", "-paper")):
            paper = name.endswith("-paper")
            disc = (Path(args.discriminators) / f"disc-{strategy_name}{'-paper' if paper else ''}" if args.discriminators
                    else work / "discriminators" / f"{strategy_name}{'-paper' if paper else ''}")
            if not (disc / "report.json").is_file():
                train_filter(source, strategy, disc, TrainConfig(epochs=args.disc_epochs, image_size=args.disc_image_size,
                                                                 seed=0, match_classes=not paper),
                             negatives=args.negatives, cache_dir=work / "cache", real_from=args.real_from)
            if paper:
                filter_corpus(source, strategy, disc, out, args.count, seed=0, workers=1, cache_dir=work / "cache",
                              selection=Selection.paper(), max_attempts=args.filter_max_attempts or args.count * 200)
            else:
                # fp32 scoring, as every recorded filtered corpus was scored: bf16 keeps 98.5% of the same
                # candidates (issue 16), and a comparison of selections should differ in the selection only
                filter_corpus(source, strategy, disc, out, args.count, seed=0, workers=1, cache_dir=work / "cache",
                              selection=Selection(oversample=args.oversample, match_area=not args.no_match_area),
                              precision="fp32")
        else:
            synthesize(source, strategy, out, args.count, seed=0, workers=args.workers, cache_dir=work / "cache")
        log(f"corpus {name}: {len(Corpus(out))} samples in {time.perf_counter() - started:.0f}s")
    return folders


def parse_strategy_params(items: list[str]) -> dict[str, str]:
    """``--param KEY=VALUE`` items as `hisyngen synth -p` parses them (values are coerced by make_strategy)."""
    from hisyngen.cli.synth import parse_params
    from hisyngen.errors import HisynError

    try:
        return parse_params(tuple(items))
    except HisynError as error:
        raise SystemExit(str(error)) from None


def variant_params(variant: str, strategy_params: dict[str, str]) -> dict[str, str] | None:
    """The --param strategy parameters a variant trained with: those of its unfiltered corpora, None if
    none were given or all its corpora are filtered (the parameters apply to unfiltered corpora only)."""
    unfiltered = [c for c in VARIANTS[variant]["corpora"] if not c.endswith(("-filtered", "-paper"))]
    return dict(strategy_params) if strategy_params and unfiltered else None


def corpora_selection(variant: str, corpora: dict[str, Path]) -> dict | None:
    """The filter selection of a variant's filtered corpora (from their corpus.json), None if unfiltered."""
    from hisyngen.corpus import Corpus

    found = [Corpus(corpora[c]).config.filter for c in VARIANTS[variant]["corpora"]]
    selections = {json.dumps(f["selection"], sort_keys=True) for f in found if f}
    if len(selections) > 1:
        raise SystemExit(f"{variant}: its corpora were filtered with different selections: {sorted(selections)}")
    return json.loads(selections.pop()) if selections else None


def export_variant(source: Any, variant: str, corpora: dict[str, Path], work: Path) -> Path:
    from hisyngen.export import export_dataset

    out = work / "exports" / variant.replace("+", "_")
    if not (out / "metainfo.json").is_file():
        export_dataset([corpora[c] for c in VARIANTS[variant]["corpora"]], source, "mmseg", out, overwrite=True)
    return out


# --- training and evaluation ------------------------------------------------------------------

def train_command(variant: str, export: Path, run_dir: Path, args: argparse.Namespace, seed: int,
                  num_classes: int) -> list[str]:
    from hisyngen.mmseg_launch import data_root_options, mmseg_config_path, precision_options, stock_tool

    crop = args.crop
    # --crop-mode window: RandomResizedCrop keeps the tissue's scale, a crop smaller than the images
    # takes a window of about its own size; resize: the paper's 90-100% of the image, shrunk to crop.
    top = min(1.0, (crop / args.size) ** 2) if args.crop_mode == "window" else 1.0
    options = [*data_root_options(export), f"model.decode_head.num_classes={num_classes}",
               f"train_cfg.max_iters={args.iters}", f"train_cfg.val_interval={args.iters + 1}",
               f"default_hooks.checkpoint.interval={args.iters}", f"randomness.seed={seed}",
               f"model.data_preprocessor.size=({crop},{crop})", f"train_dataloader.dataset.pipeline.2.size=({crop},{crop})",
               f"train_dataloader.dataset.pipeline.2.scale=({0.9 * top:.4f},{top:.4f})"]
    options += precision_options(args.precision)  # what `hisyngen train --precision` adds
    if VARIANTS[variant]["real"]:
        options += [f"train_dataloader.batch_size={2 * args.synthetic_per_step}", "train_dataloader.batch_sampler.ratio=(1,1)"]
    else:
        options += [f"train_dataloader.batch_size={args.synthetic_per_step}", "train_dataloader.batch_sampler.ratio=(1,0)",
                    "train_dataloader.dataset.real=False", "model.decode_head.loss_reg=None"]
    return [sys.executable, str(stock_tool("train")), str(mmseg_config_path(args.config)), "--work-dir", str(run_dir),
            "--cfg-options", *options]


def evaluate(run_dir: Path, pairs: list[Any], spec: Any, slide: bool, overlays: int) -> dict[str, Any]:
    """Per-class IoU / mIoU / fwIoU of the final checkpoint on ``pairs`` (background and 255 excluded)."""
    from hisyngen.imageio import atomic_write_bytes, encode_rgb_png
    from hisyngen.mmseg.evaluate import evaluate_checkpoint, final_checkpoint

    scores, sheets = evaluate_checkpoint(next(run_dir.glob("*.py")), final_checkpoint(run_dir), pairs, spec,
                                         slide=slide, overlays=overlays)
    for k, sheet in enumerate(sheets):
        atomic_write_bytes(run_dir / f"prediction-{k}.png", encode_rgb_png(sheet))
    return scores


def run_all(args: argparse.Namespace) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    source = prepare_source(args, work)
    pairs = eval_pairs(source)
    variants = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    needed = {c for v in variants for c in VARIANTS[v]["corpora"]}
    corpora = build_corpora(source, needed, args, work)
    if args.corpora_only:
        log("corpora ready: " + ", ".join(f"{k} ({v})" for k, v in sorted(corpora.items())))
        return
    results_path = Path(args.results)
    done = json.loads(results_path.read_text()) if results_path.is_file() else []
    jobs = []
    selections = {v: corpora_selection(v, corpora) for v in variants}
    params = {v: variant_params(v, parse_strategy_params(args.param)) for v in variants}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for variant in variants:
            settings = {"dataset": args.name, "variant": variant, "seed": seed, "iters": args.iters, "crop": args.crop,
                        "crop_mode": args.crop_mode, "size": args.size, "count": args.count,
                        "synthetic_per_step": args.synthetic_per_step}
            if measured_already(done, settings, args.precision, selections[variant], params[variant]):
                continue
            jobs.append((variant, seed))
    jobs.sort(key=lambda job: not VARIANTS[job[0]]["real"])  # the longest run first: no lone run at the end
    running: list[tuple[str, int, Path, subprocess.Popen, float]] = []
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    while jobs or running:
        while jobs and len(running) < args.parallel:
            variant, seed = jobs.pop(0)
            export = export_variant(source, variant, corpora, work)
            run_dir = work / "runs" / (f"{variant.replace('+', '_')}-s{seed}-i{args.iters}"
                                       + ("" if args.precision == "fp32" else f"-{args.precision}"))
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            argv = train_command(variant, export, run_dir, args, seed, source.spec.num_classes)
            log(f"train {variant} seed {seed} ({args.iters} iterations, {args.precision})")
            handle = open(run_dir / "train.log", "w")
            running.append((variant, seed, run_dir, subprocess.Popen(argv, cwd=run_dir, env=env, stdout=handle,
                                                                   stderr=subprocess.STDOUT), time.perf_counter()))
        time.sleep(1.0)
        for item in list(running):
            variant, seed, run_dir, proc, started = item
            if proc.poll() is None:
                continue
            running.remove(item)
            seconds = time.perf_counter() - started
            if proc.returncode != 0:
                raise SystemExit(f"training {variant} failed; see {run_dir / 'train.log'}")
            scores = evaluate(run_dir, pairs, source.spec, slide=args.slide, overlays=args.overlays)
            record = {"dataset": args.name, "variant": variant, "seed": seed, "iters": args.iters,
                      "synthetic_per_step": args.synthetic_per_step, "real_per_step": args.synthetic_per_step
                      if VARIANTS[variant]["real"] else 0, "crop": args.crop, "crop_mode": args.crop_mode, "size": args.size, "count": args.count,
                      "precision": args.precision, "selection": selections[variant],
                      **({"params": params[variant]} if params[variant] else {}),
                      "train_seconds": round(seconds, 1), "eval_images": len(pairs),
                      **scores}
            done = json.loads(results_path.read_text()) if results_path.is_file() else []
            done.append(record)
            results_path.parent.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(done, indent=1) + "\n")
            log(f"{variant} seed {seed}: mIoU {scores['mIoU']:.2f} fwIoU {scores['fwIoU']:.2f} ({seconds / 60:.1f} min)")


# --- report -----------------------------------------------------------------------------------

def render(results_path: str) -> str:
    records = json.loads(Path(results_path).read_text())
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        rows = [r for r in records if r["dataset"] == dataset]
        classes = list(rows[0]["IoU"])
        first = rows[0]
        lines += [f"**{dataset}** - {first['iters']} iterations x {first['synthetic_per_step']} synthetic images "
                  f"(+{first['synthetic_per_step']} real for {', '.join(f'`{v}`' for v, spec in VARIANTS.items() if spec['real'])}), {first['crop']} px crops of {first.get('size', 224)} px "
                  f"images, {first['count']} samples per corpus, evaluated on {first['eval_images']} held-out images ({first['pixels']:,} tissue pixels)",
                  "", "| variant | seeds | mIoU | fwIoU | " + " | ".join(f"IoU {c}" for c in classes) + " | train time |",
                  "|---|---|---|---|" + "---|" * len(classes) + "---|"]
        for label in dict.fromkeys(record_label(r) for r in sorted(rows, key=label_order)):
            runs = [r for r in rows if record_label(r) == label]

            def stat(values: list[float]) -> str:
                values = [v for v in values if v == v]
                if not values:
                    return "n/a"
                return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}" if len(values) > 1 else f"{values[0]:.1f}"

            cells = [stat([r["mIoU"] for r in runs]), stat([r["fwIoU"] for r in runs])]
            cells += [stat([r["IoU"][c] for r in runs]) for c in classes]
            minutes = np.mean([r["train_seconds"] for r in runs]) / 60
            lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + f" | {minutes:.0f} min |")
        lines += ["", *paired_differences(rows), ""]
    return "\n".join(lines)


def measured_already(done: list[dict], settings: dict, precision: str, selection: dict | None,
                     params: dict | None) -> bool:
    """Whether ``done`` holds a result of these settings, precision, filter selection and --param
    strategy parameters (records without "params" had none)."""
    return any(all(r.get(k) == v for k, v in settings.items()) and record_precision(r) == precision
               and record_selection(r) == selection and r.get("params") == params for r in done)


def record_precision(record: dict) -> str:
    """The training precision of a result (records from before ``--precision`` trained in fp32)."""
    return record.get("precision", "fp32")


def record_selection(record: dict) -> dict | None:
    """The filter selection of a result's corpora. Records from before it was recorded: the -paper
    variants used Selection.paper(), filtered/full rank with quotas and no area matching (what
    build_corpora ran then), the others no filter."""
    from hisyngen.filtering.select import Selection

    if "selection" in record:
        return record["selection"]
    if not any(c.endswith(("-filtered", "-paper")) for c in VARIANTS[record["variant"]]["corpora"]):
        return None
    paper = record["variant"].endswith("-paper")
    return (Selection.paper() if paper else Selection(match_area=False)).to_dict()


def record_label(record: dict) -> str:
    """A result's row in the tables: its variant, plus what differs from this code's defaults
    (strategy parameters given with --param; bf16 training; a filtered variant whose selection is not
    its variant's default). Records without "params" had none."""
    from hisyngen.filtering.select import Selection

    parts = [record["variant"], *(f"{k}={v}" for k, v in record.get("params", {}).items())]
    selection = record_selection(record)
    if selection is not None and not record["variant"].endswith("-paper"):
        # against the default itself (an other --oversample is a row of its own, named by describe())
        if selection != Selection().to_dict():
            parts.append("no area matching" if selection == Selection(match_area=False).to_dict()
                         else Selection.from_dict(selection).describe())
    if record_precision(record) != "fp32":
        parts.append(record_precision(record))
    return ", ".join(parts)


def label_order(record: dict) -> tuple:
    """Table order: variants as in VARIANTS, then the label (the default selection and fp32 first)."""
    label = record_label(record)
    return list(VARIANTS).index(record["variant"]), label != record["variant"], label


def paired_differences(rows: list[dict]) -> list[str]:
    """mIoU differences the targets are about, paired by seed (the same training seed in both variants);
    and bf16 - fp32 of each variant trained both ways."""
    lines = []
    def fp32_label(record: dict) -> str:  # its row had it trained in fp32: same variant, params and selection
        return record_label({**record, "precision": "fp32"})

    for label in dict.fromkeys(fp32_label(r) for r in rows if record_precision(r) == "bf16"):
        pairs = {(record_precision(r), r["seed"]): r["mIoU"] for r in rows if fp32_label(r) == label}
        seeds = sorted(s for p, s in pairs if p == "bf16" and ("fp32", s) in pairs)
        if seeds:
            diffs = ", ".join(f"{pairs[('bf16', s)] - pairs[('fp32', s)]:+.1f} (seed {s})" for s in seeds)
            lines.append(f"- mIoU `{label}` bf16 - fp32: {diffs}")
    by_key = {(record_label(r), r["seed"]): r["mIoU"] for r in rows if record_precision(r) == "fp32"}
    for better, baseline in (("full", "onelabel"), ("filtered", "mosaic+bezier"), ("full", "unfiltered+real"),
                             ("filtered", "filtered, no area matching"), ("full", "full, no area matching"),
                             ("unfiltered+real", "mosaic+bezier"), ("filtered", "filtered-paper"),
                             ("full", "full-paper"), ("filtered-paper", "mosaic+bezier")):
        seeds = sorted(s for v, s in by_key if v == better and (baseline, s) in by_key)
        if seeds:
            diffs = ", ".join(f"{by_key[(better, s)] - by_key[(baseline, s)]:+.1f} (seed {s})" for s in seeds)
            lines.append(f"- mIoU `{better}` - `{baseline}`: {diffs}")
    # a run with --param strategy parameters against the same run without them
    without_params = {record_label(r): record_label({k: v for k, v in r.items() if k != "params"})
                      for r in rows if r.get("params")}
    for better, baseline in without_params.items():
        seeds = sorted(s for v, s in by_key if v == better and (baseline, s) in by_key)
        if seeds:
            diffs = [by_key[(better, s)] - by_key[(baseline, s)] for s in seeds]
            lines.append(f"- mIoU `{better}` - `{baseline}`: " + ", ".join(f"{d:+.1f} (seed {s})" for d, s in zip(diffs, seeds))
                         + f" (mean {np.mean(diffs):+.1f})")
    return lines


def class_mix(work: str, pairs: list[Any] | None = None, spec: Any = None) -> str:
    """The README table of each corpus's class mix in WORK: mean pixel share per class over its samples.

    With the evaluation ``pairs`` (and their ``spec``) it adds their pixel shares, background excluded,
    and the mIoU of predicting the majority class everywhere: the floor a trained model must beat.
    """
    from hisyngen.corpus import Corpus
    from hisyngen.imageio import read_mask

    folders = sorted(p.parent for p in (Path(work) / "corpora").glob("*/corpus.json"))
    if not folders:
        raise SystemExit(f"no corpora under {Path(work) / 'corpora'}")
    classes = json.loads((folders[0] / "corpus.json").read_text())["spec"]["classes"]
    lines = ["| corpus | samples | " + " | ".join(classes) + " | ignored (white background) |",
             "|---|---|" + "---|" * (len(classes) + 1)]
    for folder in folders:
        rows = list(Corpus(folder).rows())
        shares = np.mean([r["fractions"] + [r["ignore_fraction"]] for r in rows], axis=0) if rows else []
        lines.append(f"| {folder.name} | {len(rows)} | " + " | ".join(f"{100 * v:.1f}%" for v in shares) + " |")
    if pairs:
        c = spec.num_classes
        counts = np.zeros(c, np.int64)
        for record in pairs:
            gt = read_mask(record.mask_path, spec).ravel()
            counts += np.bincount(gt[gt < c], minlength=c)[:c]
        shares = counts / counts.sum()
        lines.append(f"| held-out masks (evaluation) | {len(pairs)} | " + " | ".join(f"{100 * v:.1f}%" for v in shares)
                     + " | excluded |")
        lines += ["", f"Predicting {spec.classes[int(shares.argmax())]} everywhere scores mIoU "
                  f"{100 * shares.max() / c:.1f} on the held-out masks (IoU = its pixel share, 0 for the others)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render", metavar="RESULTS", help="print the README table of a results file and exit")
    parser.add_argument("--class-mix", metavar="WORK",
                        help="print the class mix (pixel share per class) of the corpora in a --work folder and exit; "
                             "with --source (and --weak-from ...), the evaluation masks' too")
    parser.add_argument("--source")
    parser.add_argument("--name", help="dataset name in the results")
    parser.add_argument("--work", help="working folder (corpora, exports, runs; reused between calls)")
    parser.add_argument("--results", default=str(ROOT / "docs" / "quality.json"))
    parser.add_argument("--variants", default="all")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--synthetic-per-step", type=int, default=8)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--crop-mode", choices=["resize", "window"], default="resize",
                        help="a crop smaller than the images: a window at full resolution, or the image shrunk")
    parser.add_argument("--count", type=int, default=1000, help="samples per corpus")
    parser.add_argument("--size", type=int, default=224, help="synthetic image size")
    parser.add_argument("--config", default="cpu_deeplabv3plus_r18")
    parser.add_argument("--parallel", type=int, default=2, help="trainings at once (1 thread each)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="DeepLabV3+ training precision, as `hisyngen train --precision` (bf16: bf16 "
                             "autocast, float32 weights); results record it and bf16 runs are listed apart")
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes")
    parser.add_argument("--disc-epochs", type=int, default=5)
    parser.add_argument("--disc-image-size", type=int, default=224)
    parser.add_argument("--negatives", type=int, default=1000)
    parser.add_argument("--real-from", default="multi")
    parser.add_argument("--discriminators", default=None, metavar="DIR",
                        help="reuse trained discriminators DIR/disc-<strategy> (e.g. bench_filter.py --keep DIR)")
    parser.add_argument("--filter-max-attempts", type=int, default=None,
                        help="-paper variants: candidates per filtered corpus at most")
    parser.add_argument("--oversample", type=float, default=5.0,
                        help="filtered/full variants: candidates scored per kept sample (rank selection)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="strategy parameter of the unfiltered corpora (repeatable; as `hisyngen synth -p`, "
                             "e.g. stain=reinhard); recorded and listed apart. Use a --work of its own, "
                             "corpora are reused by name")
    parser.add_argument("--corpora-only", action="store_true", help="build the corpora, then stop")
    parser.add_argument("--no-match-area", action="store_true",
                        help="filtered/full variants: rank selection without area matching (hisyngen before it); "
                             "use a --work of its own, corpora are reused by name")
    parser.add_argument("--filtered-from", default=None, metavar="BUILD",
                        help="take the filtered corpora from this `hisyngen build` folder (same --count)")
    parser.add_argument("--weak-from", choices=["val", "test"], default=None,
                        help="cut the training source from this annotated split (held-out images evaluate)")
    parser.add_argument("--window", type=int, default=224)
    parser.add_argument("--stride", type=int, default=112)
    parser.add_argument("--min-fraction", type=float, default=0.05)
    parser.add_argument("--holdout", type=float, default=0.5)
    parser.add_argument("--slide", action="store_true", help="sliding-window evaluation (224 windows, stride 112)")
    parser.add_argument("--overlays", type=int, default=3, help="prediction overlays saved per run")
    args = parser.parse_args()
    if args.render:
        print(render(args.render))
        return
    if args.class_mix:
        if args.source:  # also the evaluation masks (the weak-patch split is the one cached in WORK)
            source = prepare_source(args, Path(args.class_mix))
            print(class_mix(args.class_mix, eval_pairs(source), source.spec))
        else:
            print(class_mix(args.class_mix))
        return
    if not (args.source and args.name and args.work):
        parser.error("--source, --name and --work are required (or --render)")
    parse_strategy_params(args.param)  # a malformed --param fails before any work
    run_all(args)


if __name__ == "__main__":
    main()

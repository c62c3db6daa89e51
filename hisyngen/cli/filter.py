"""Commands of the filtering module: ``filter-train``, ``filter``, ``realism``."""

from __future__ import annotations

import click

from hisyngen.cli.common import LibraryDefault, library_default, open_source_from_options, print_json, source_options
from hisyngen.cli.synth import STRATEGY_CHOICE, build_strategy, strategy_options
from hisyngen.precision import PRECISIONS
from hisyngen.filtering.select import MAX_ATTEMPTS_DEFAULT, MODES, Selection
from hisyngen.spec import PAPER_COUNT, PAPER_EPOCHS, PAPER_EPOCHS_BY_RUN


# Defaults are read when a command runs or shows its help (hisyngen.cli.common.LibraryDefault):
# the discriminator's from TrainConfig, the others from the API function the command calls.
TRAIN_CONFIG = ("hisyngen.filtering.train", "TrainConfig")
TRAIN_FILTER = ("hisyngen.filtering.train", "train_filter")
FILTER_CORPUS = ("hisyngen.filtering.filter", "filter_corpus")
REALISM_REPORT = ("hisyngen.filtering.realism", "realism_report")


def _train_option(*decls: str, field: str, **attrs):
    """An option whose default is the ``TrainConfig`` field ``field``."""
    return click.option(*decls, cls=LibraryDefault, default=library_default(*TRAIN_CONFIG, field), show_default=True,
                        **attrs)


def _api_option(*decls: str, api: tuple[str, str, str], **attrs):
    """An option whose default is the parameter ``api[2]`` of the function ``api[:2]``."""
    return click.option(*decls, cls=LibraryDefault, default=library_default(*api), show_default=True, **attrs)

PAPER_EPOCHS_HELP = f"paper: {PAPER_EPOCHS}; " + "; ".join(
    f"{n} for {dataset.split('-')[0].upper()} {strategy.capitalize()}" for (dataset, strategy), n in PAPER_EPOCHS_BY_RUN.items())

PRECISION_HELP = ("Discriminator arithmetic: auto = bf16 on a CPU with AMX/AVX-512-BF16 or a GPU with native bf16, "
                  "else fp32 (fp16 on older GPUs); recorded in the report.")


def _precision_option(default):
    return click.option("--precision", type=click.Choice(PRECISIONS), cls=LibraryDefault, default=default,
                        show_default=True, help=PRECISION_HELP)


def _percent(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.1%}"


@click.command("filter-train")
@click.argument("source", type=click.Path())
@source_options
@click.option("-s", "--strategy", type=STRATEGY_CHOICE, required=True,
              help="Strategy whose samples the discriminator learns to tell from real images.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Folder for model.pt and report.json (one per strategy).")
@_api_option("--negatives", api=(*TRAIN_FILTER, "negatives"), type=int,
              help="Synthetic images generated on the fly (from a stream separate from any corpus).")
@click.option("--negatives-from", type=click.Path(exists=True, file_okay=False), default=None,
              help="Use the images of this (unfiltered) corpus as negatives instead.")
@_api_option("--real-from", api=(*TRAIN_FILTER, "real_from"),
              help="Real images: 'multi' (train images with >= 2 tissue labels, the paper), 'all' (every train image) "
                   "or a folder of real patches.")
@_train_option("--epochs", field="epochs", type=int, help=f"Training epochs ({PAPER_EPOCHS_HELP}).")
@_train_option("--batch-size", field="batch_size", type=int)
@_train_option("--lr", field="lr", type=float, help="Adam learning rate.")
@_train_option("--val-fraction", field="val_fraction", type=float, help="Held-out fraction (seeded split).")
@_train_option("--image-size", field="image_size", type=int, help="Images are resized to this.")
@_train_option("--seed", field="seed", type=int)
@_train_option("--device", field="device", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
@_precision_option(library_default(*TRAIN_CONFIG, "precision"))
@_train_option("--num-workers", field="num_workers", type=int, help="Data-loading worker processes.")
@_train_option("--match-classes/--no-match-classes", field="match_classes",
              help="Weight the synthetic images so each class is present as often as in the real ones (the "
                   "discriminator then judges looks, not which tissues an image holds); --no-match-classes: the paper.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from these local ResNet-18 weights instead of random ones: torchvision's ImageNet resnet18 "
                   "checkpoint (resnet18-*.pth) or a discriminator's model.pt; the 2-way head stays seeded.")
@strategy_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def filter_train(source, dataset, spec_file, strategy, out, negatives, negatives_from, real_from, epochs, batch_size, lr,
                 val_fraction, image_size, seed, device, precision, num_workers, match_classes, init_from, size, background_policy, max_background, params,
                 allow_missing_classes, cache_dir, as_json, quiet) -> None:
    """Train the real-vs-synthetic discriminator of one strategy (ResNet-18 from scratch).

    Positives are real train images with two or more tissue labels; negatives are synthetic images
    of the strategy. Writes OUT/model.pt and OUT/report.json with held-out accuracy, precision,
    recall, F1, ROC-AUC (the paper's Table V), split sizes and the training curve.

    \b
    Example:
      hisyngen filter-train data/BCSS-WSSS -s mosaic -o filters/mosaic --epochs 3
      hisyngen filter data/BCSS-WSSS -s mosaic --model filters/mosaic -n 7200 -o corpora/mosaic
    """
    from hisyngen.filtering.train import TrainConfig, train_filter

    src = open_source_from_options(source, dataset, spec_file)
    strat = build_strategy(strategy, src.spec, size, background_policy, max_background, params, allow_missing_classes)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, val_fraction=val_fraction, image_size=image_size,
                         seed=seed, device=device, precision=precision, num_workers=num_workers,
                         match_classes=match_classes, init_from=init_from)
    report = train_filter(src, strat, out, config, negatives=negatives, negatives_from=negatives_from,
                          real_from=real_from, cache_dir=cache_dir, progress=not quiet and not as_json)
    if as_json:
        print_json(report)
        return
    h = report["heldout"]
    split = report["split"]
    click.echo(f"{out}/model.pt: {strategy} discriminator, best epoch {report['best_epoch']}/{epochs} "
               f"in {report['seconds']:.0f}s on {report['device']} ({report['precision']})")
    click.echo(f"  train {split['train']['real']} real + {split['train']['synthetic']} synthetic, "
               f"held out {split['val']['real']} + {split['val']['synthetic']}")
    click.echo(f"  held-out accuracy {_percent(h['accuracy'])}  precision {_percent(h['precision'])}  "
               f"recall {_percent(h['recall'])}  F1 {_percent(h['f1'])}  ROC-AUC {h['roc_auc']:.3f}")
    if report.get("heldout_per_class"):
        click.echo("  held-out mean p_real by class (real / synthetic images holding it): " + "  ".join(
            f"{name} {_score(v['real'])}/{_score(v['synthetic'])}" for name, v in report["heldout_per_class"].items()))


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@click.command("filter")
@click.argument("source", type=click.Path())
@source_options
@click.option("-s", "--strategy", type=STRATEGY_CHOICE, required=True, help="Synthesis strategy.")
@click.option("-m", "--model", required=True, type=click.Path(exists=True),
              help="The strategy's discriminator (a filter-train folder or its model.pt).")
@click.option("-n", "--count", default=PAPER_COUNT, show_default=True, type=int, help="Samples to keep.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Corpus folder (a rerun resumes).")
@_api_option("--seed", api=(*FILTER_CORPUS, "seed"), type=int)
@click.option("--selection", type=click.Choice(MODES), default=Selection.mode, show_default=True,
              help="rank: score --oversample x COUNT candidates and keep the most realistic (known cost, never "
                   "gives up); threshold: keep candidates with p_real > --threshold until COUNT (the paper).")
@click.option("--oversample", default=Selection.oversample, show_default=True, type=float,
              help="rank: candidates scored per kept sample (higher = more selective, proportionally slower).")
@click.option("--threshold", default=Selection.threshold, show_default=True, type=float,
              help="threshold: keep samples with p_real above this.")
@click.option("--stratify/--no-stratify", default=Selection.stratify, show_default=True,
              help="Per-stratum quotas (stratum = dominant class + classes present) so the kept samples have the "
                   "class mix of the unfiltered stream; without, a class the discriminator finds easy to call "
                   "synthetic is kept less.")
@click.option("--match-area/--no-match-area", default=Selection.match_area, show_default=True,
              help="rank: keep the most realistic of each run of ~--oversample candidates with neighbouring class "
                   "areas (rarest class first), so the rarest class' area does not shrink within a stratum; without, a stratum's highest "
                   "scores (what rank corpora from before this option were).")
@click.option("--paper", is_flag=True,
              help="The paper's filter: --selection threshold --threshold 0.5 --no-stratify.")
@click.option("--max-attempts", default=None, type=int,
              help="threshold: give up after this many candidates, counted in whole --batch-size batches "
                   f"[default: {MAX_ATTEMPTS_DEFAULT}].")
@_api_option("--batch-size", api=(*FILTER_CORPUS, "batch_size"), type=int, help="Scoring batch (part of the corpus identity).")
@_api_option("-w", "--workers", api=(*FILTER_CORPUS, "workers"), type=click.IntRange(min=0),
             help="Generation processes running ahead of the scorer (0 = generate in the main process).")
@_api_option("--device", api=(*FILTER_CORPUS, "device"), help="auto (CUDA when available), cpu, cuda ...")
@_precision_option(library_default(*FILTER_CORPUS, "precision"))
@strategy_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def filter_command(source, dataset, spec_file, strategy, model, count, out, seed, selection, oversample, threshold,
                   stratify, match_area, paper, max_attempts, batch_size, workers, device, precision, size, background_policy, max_background,
                   params, allow_missing_classes, cache_dir, as_json, quiet) -> None:
    """Generate fresh samples and keep the COUNT the discriminator finds most realistic.

    By default (rank) it scores 5 x COUNT candidates and keeps the most realistic ones of each
    stratum, in proportion to the stratum's share of the candidates, and within a stratum the best
    of each run of ~5 with neighbouring class areas, so filtering keeps the class mix of unfiltered
    synthesis. Each kept sample's p_real goes into the manifest (disc_score);
    the per-stratum quotas, acceptance and the class mix before and after go into corpus.json.
    Deterministic for a seed and a model; an interrupted run resumes.

    \b
    Example:
      hisyngen filter data/BCSS-WSSS -s mosaic -m filters/mosaic -n 1000 -o corpora/mosaic
      hisyngen filter data/BCSS-WSSS -s mosaic -m filters/mosaic -n 1000 -o corpora/mosaic-paper --paper
    """
    from hisyngen.filtering.filter import filter_corpus

    if paper:
        if selection == "rank" and _given("selection") or _given("stratify") and stratify:
            raise click.UsageError("--paper is --selection threshold --no-stratify; drop the conflicting option")
        if _given("match_area"):
            raise click.UsageError("--match-area applies to --selection rank, not to --paper")
        choice = Selection.paper(threshold)
    elif selection == "threshold" and _given("match_area"):
        raise click.UsageError("--match-area applies to --selection rank; threshold keeps candidates in index order")
    if not paper:
        choice = Selection(mode=selection, stratify=stratify, oversample=oversample, threshold=threshold,
                           match_area=match_area)
    src = open_source_from_options(source, dataset, spec_file)
    strat = build_strategy(strategy, src.spec, size, background_policy, max_background, params, allow_missing_classes)
    summary = filter_corpus(src, strat, model, out, count, seed=seed, selection=choice, max_attempts=max_attempts,
                            batch_size=batch_size, workers=workers, device=device, precision=precision, cache_dir=cache_dir,
                            progress=not quiet and not as_json)
    if as_json:
        print_json(summary.to_dict())
        return
    for problem in summary.problems:
        click.echo(f"warning: {problem}", err=True)
    click.echo(f"{out}: kept {summary.kept:,} of {summary.attempted:,} {strategy} candidates "
               f"(acceptance {summary.acceptance_rate:.1%}; {choice.describe()}) in {summary.seconds:.0f}s")
    click.echo(render_filter_report(summary.to_dict()))


def _given(name: str) -> bool:
    """Whether the option ``name`` of the running command was given on the command line."""
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(name) == ParameterSource.COMMANDLINE


def render_filter_report(summary: dict) -> str:
    """Per-stratum quotas and acceptance, and the class mix before and after filtering."""
    from hisyngen.filtering.select import render_class_mix

    lines = ["  class pixel share, candidates -> kept: " + render_class_mix(summary["class_mix"]),
             f"  {'stratum (dominant (present))':<34} {'quota':>6} {'kept':>6} {'scored':>8} {'acceptance':>10} {'mean p':>7}"]
    for row in summary["strata"]:
        lines.append(f"  {row['classes']:<34} {row['quota']:>6} {row['kept']:>6} {row['scored']:>8} "
                     f"{row['acceptance']:>10.1%} {row['mean_score']:>7.3f}")
    return "\n".join(lines)


@click.command()
@click.argument("corpora", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("-r", "--real", "real_source", required=True, type=click.Path(), help="The real source dataset.")
@source_options
@_api_option("--real-from", api=(*REALISM_REPORT, "real_from"), help="multi, all, or a folder of real patches.")
@_api_option("--max-images", api=(*REALISM_REPORT, "max_images"), type=int, help="Images per set (evenly spaced).")
@_train_option("--epochs", field="epochs", type=int, help="Judge training epochs.")
@_train_option("--batch-size", field="batch_size", type=int)
@_train_option("--image-size", field="image_size", type=int)
@_train_option("--seed", field="seed", type=int)
@_train_option("--device", field="device")
@_precision_option(library_default(*TRAIN_CONFIG, "precision"))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def realism(corpora, real_source, dataset, spec_file, real_from, max_images, epochs, batch_size, image_size, seed,
            device, precision, as_json, quiet) -> None:
    """How real do CORPORA look? Two-sample accuracy, Frechet distance, KID and colour statistics.

    A fresh judge discriminator is trained on half of the real images against half of all given
    corpora; the other halves are measured. Pass an unfiltered and a filtered corpus together to
    compare them in one table (50% two-sample accuracy = indistinguishable from real).

    \b
    Example:
      hisyngen realism corpora/mosaic-raw corpora/mosaic --real data/BCSS-WSSS
    """
    from hisyngen.filtering.realism import JUDGE_VAL_FRACTION, realism_report, render_realism
    from hisyngen.filtering.train import TrainConfig

    src = open_source_from_options(real_source, dataset, spec_file)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, image_size=image_size, seed=seed, device=device,
                         precision=precision, val_fraction=JUDGE_VAL_FRACTION)
    report = realism_report(list(corpora), src, real_from=real_from, max_images=max_images, config=config,
                            progress=not quiet and not as_json)
    if as_json:
        print_json(report)
    else:
        click.echo(render_realism(report))

"""Commands that make and look at synthesized corpora: ``synth``, ``merge``, ``preview``."""

from __future__ import annotations

import click

from hisyngen.build.config import top_level_default
from hisyngen.cli.common import (LibraryChoice, LibraryDefault, library_default, open_source_from_options, print_json,
                                 source_options)
from hisyngen.errors import HisynError
from hisyngen.spec import PAPER_COUNT
from hisyngen.workers import default_workers


def strategy_choices() -> list[str]:
    """The registry's strategies (:func:`hisyngen.synthesis.strategy_names`), the ones a build makes
    by default (the paper's two, mosaic and bezier) first, then the others in registry order."""
    from hisyngen.synthesis import strategy_names

    names = strategy_names()
    first = [name for name in top_level_default("strategies") if name in names]
    return first + [name for name in names if name not in first]


STRATEGY_CHOICE = LibraryChoice(strategy_choices)
"""``--strategy`` of every command that generates samples."""

STRATEGY = ("hisyngen.synthesis", "Strategy")


def parse_params(items: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HisynError(f"--param expects KEY=VALUE, got {item!r}")
        params[key.strip()] = value.strip()
    return params


def strategy_options(func):
    """Options shared by commands that generate samples (synth, filter, build)."""
    decorators = [
        click.option("--size", cls=LibraryDefault, default=library_default(*STRATEGY, "size"), show_default=True, type=int,
                     help="Output image size (square)."),
        click.option("--background-policy", type=LibraryChoice(_background_policies), cls=LibraryDefault,
                     default=library_default(*STRATEGY, "background_policy"), show_default=True,
                     help="White background of a source patch: 255 in the mask (ignore) or its tissue class (tissue, reference behaviour)."),
        click.option("--max-background", cls=LibraryDefault, default=library_default(*STRATEGY, "max_background"),
                     show_default=True, type=float,
                     help="Redraw a tile/source whose white-background fraction exceeds this."),
        click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
                     help="Strategy parameter, repeatable: -p points=12, -p anchor=0.3,0.7, -p pairs=TUM:STR,STR:TUM. "
                          "See --list-strategies."),
        click.option("--allow-missing-classes", is_flag=True,
                     help="Synthesise even when some class has no single-tissue source image."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                     help="Where the decoded single-tissue pool is cached [default: $HISYNGEN_CACHE or ~/.cache/hisyngen]."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _background_policies() -> tuple[str, ...]:
    from hisyngen.synthesis import BACKGROUND_POLICIES

    return BACKGROUND_POLICIES


def build_strategy(name: str, spec, size: int, background_policy: str, max_background: float, params: tuple[str, ...],
                   allow_missing_classes: bool):
    from hisyngen.synthesis import make_strategy

    values = {"size": size, "background_policy": background_policy, "max_background": max_background,
              "allow_missing_classes": allow_missing_classes, **parse_params(params)}
    return make_strategy(name, values, classes=spec.classes)


def _list_strategies(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from hisyngen.synthesis import describe_strategies

    click.echo(describe_strategies())
    ctx.exit(0)


@click.command()
@click.argument("source", type=click.Path())
@source_options
@click.option("-s", "--strategy", type=STRATEGY_CHOICE, required=True, help="Synthesis strategy.")
@click.option("-n", "--count", default=PAPER_COUNT, show_default=True, type=int, help="Number of samples.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Corpus folder (created; a rerun resumes it).")
@click.option("--seed", cls=LibraryDefault, default=library_default("hisyngen.corpus", "synthesize", "seed"), show_default=True,
              type=int, help="Random seed: same seed, same bytes.")
@click.option("-w", "--workers", default=default_workers, show_default="all CPUs", type=click.IntRange(min=1),
              help="Worker processes (the output does not depend on it).")
@click.option("--shard", metavar="I/N", default=None,
              help="Generate only shard I of N (0-based; e.g. $SLURM_ARRAY_TASK_ID/N), then `hisyngen merge`.")
@strategy_options
@click.option("--list-strategies", is_flag=True, expose_value=False, is_eager=True, callback=_list_strategies,
              help="Describe every strategy and its parameters, then exit.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def synth(source: str, dataset, spec_file, strategy: str, count: int, out: str, seed: int, workers: int,
          shard: str | None, size, background_policy, max_background, params, allow_missing_classes, cache_dir,
          as_json: bool, quiet: bool) -> None:
    """Generate synthetic image/mask pairs from the single-tissue images of SOURCE.

    Strategies (docs/method.md, Synthesis): mosaic and bezier (HisynSeg), and the paper's ablation
    baselines onelabel, gridded, cutmix and mosaic-nosplice. Writes OUT/images/*.png,
    OUT/masks/*.png (palette masks, 255 = ignore) and OUT/manifest.jsonl. Interrupted runs resume;
    output is byte-identical for a seed whatever --workers and --shard.

    \b
    Examples:
      hisyngen synth data/BCSS-WSSS -s bezier -n 7200 -o corpora/bezier
      hisyngen synth data/WSSS4LUAD -s bezier -p points=12 -p pairs=tumor:stroma,stroma:tumor -o b12
      hisyngen synth data/BCSS-WSSS -s mosaic -o part3 --shard 3/8     # one job of an array of 8
      hisyngen merge part0 part1 ... part7 -o corpora/mosaic
    """
    from hisyngen.corpus import parse_shard, synthesize

    src = open_source_from_options(source, dataset, spec_file)
    strat = build_strategy(strategy, src.spec, size, background_policy, max_background, params, allow_missing_classes)
    summary = synthesize(src, strat, out, count=count, seed=seed, workers=workers, shard=parse_shard(shard),
                         cache_dir=cache_dir, progress=not quiet and not as_json)
    if as_json:
        print_json(summary.to_dict())
        return
    for problem in summary.problems:
        click.echo(f"warning: {problem}", err=True)
    done = f"{summary.generated} generated" + (f", {summary.resumed} already there" if summary.resumed else "")
    click.echo(f"{out}: {summary.strategy} corpus, samples {summary.to_dict()['indices'][0]}-"
               f"{summary.to_dict()['indices'][1] - 1} of {summary.count} ({done}) in {summary.seconds:.1f}s")


@click.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Merged corpus folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def merge(shards: tuple[str, ...], out: str, quiet: bool) -> None:
    """Merge the shards of one corpus (made with `synth --shard i/n`) into OUT.

    Every shard 0..n-1 must be present and complete; the result is byte-identical to an unsharded
    run with the same seed.
    """
    from hisyngen.corpus import merge_corpora

    result = merge_corpora(list(shards), out, progress=not quiet)
    click.echo(f"{result['out']}: {result['count']} samples from {result['shards']} shards")


@click.command()
@click.argument("corpus", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", default="preview.png", show_default=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option("-n", "--count", cls=LibraryDefault, default=library_default("hisyngen.preview", "write_preview", "count"),
              show_default=True, type=int, help="Samples to show (evenly spaced).")
@click.option("--columns", cls=LibraryDefault, default=library_default("hisyngen.preview", "write_preview", "columns"),
              show_default=True, type=int, help="Samples per row.")
def preview(corpus: str, out: str, count: int, columns: int) -> None:
    """Write a contact sheet of CORPUS: each image next to its mask overlay, with a colour legend."""
    from hisyngen.preview import write_preview

    path = write_preview(corpus, out, count=count, columns=columns)
    click.echo(f"wrote {path}")

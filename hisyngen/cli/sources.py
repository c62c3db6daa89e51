"""Commands about source datasets: ``inspect``."""

from __future__ import annotations

import click

from hisyngen.cli.common import LibraryDefault, library_default, open_source_from_options, print_json, source_options

INSPECT_SOURCE = ("hisyngen.sources.inspect", "inspect_source")


@click.command()
@click.argument("root", type=click.Path(exists=False))
@source_options
@click.option("--min-pool", cls=LibraryDefault, default=library_default(*INSPECT_SOURCE, "min_pool"), show_default=True,
              type=click.IntRange(min=0),
              help="Warn when a class has fewer single-tissue train images than this.")
@click.option("--quick", is_flag=True, help="Read train image headers only (skip the full decode that finds truncated files).")
@click.option("--workers", cls=LibraryDefault, default=library_default(*INSPECT_SOURCE, "workers"), show_default=True,
              type=click.IntRange(min=1), help="Decoding threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for scripts).")
@click.option("--strict", is_flag=True, help="Exit with status 2 when there is any warning.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def inspect(root: str, dataset: str | None, spec_file: str | None, min_pool: int, quick: bool, workers: int,
            as_json: bool, strict: bool, quiet: bool) -> None:
    """Describe the dataset at ROOT and list what is wrong with it.

    ROOT is a benchmark folder (WSSS4LUAD, BCSS-WSSS or LUAD-HistoSeg layout, detected from folder
    and file names), a folder of class-named subfolders or class-prefixed images, or a CSV/JSONL
    manifest (path,labels[,split][,mask]). Prints images per split, train label combinations,
    single-tissue images per class, image sizes, val/test mask statistics and warnings.

    \b
    Example:
      hisyngen inspect data/BCSS-WSSS
      hisyngen inspect tiles/ --json > report.json
    """
    from hisyngen.sources.inspect import inspect_source, render_report

    source = open_source_from_options(root, dataset, spec_file)
    report = inspect_source(source, min_pool=min_pool, check_pixels=not quick, workers=workers,
                            progress=not quiet and not as_json)
    if as_json:
        print_json(report)
    else:
        click.echo(render_report(report))
    if strict and report["warnings"]:
        raise SystemExit(2)

"""Commands that hand datasets to other tools: ``export`` (MMSegmentation, Hugging Face) and ``push``."""

from __future__ import annotations

import sys

import click

from hisyngen.cli.common import open_source_from_options, print_json, source_options
from hisyngen.safety import recorded_command


@click.command()
@click.argument("corpora", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--source", required=True, type=click.Path(exists=True),
              help="The real dataset the corpora were made from: its train images (image-level labels) and val/test pairs are exported too.")
@source_options
@click.option("-f", "--format", "fmt", type=click.Choice(["mmseg", "hf"]), required=True,
              help="mmseg: img_dir/ann_dir folders for MMSegmentation; hf: parquet shards + dataset card for Hugging Face datasets.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Export folder (written only when complete).")
@click.option("--overwrite", is_flag=True, help="Replace an existing export at --out (only once the new one succeeded).")
@click.option("--license", "license_", metavar="LICENSE", default=None,
              help="hf: license id for the dataset card [default: other].")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="hf: dataset card tag, repeatable; replaces the defaults (histopathology, segmentation, synthetic).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def export(corpora: tuple[str, ...], source: str, dataset, spec_file, fmt: str, out: str, overwrite: bool,
           license_: str | None, tags: tuple[str, ...], as_json: bool, quiet: bool) -> None:
    """Export synthesized CORPORA and the real splits of --source as one dataset.

    Corpora of several strategies (mosaic + bezier) merge into the synthetic train split, each
    sample keeping its strategy; the source adds train_real (real images, image-level labels only;
    hf: the `weak` subset) and val/test (real images with masks; the source background index
    becomes 255 = ignore).
    Masks are palette PNGs, 255 = ignore. Layouts: docs/formats.md.

    \b
    Examples:
      hisyngen export corpora/mosaic corpora/bezier --source data/BCSS-WSSS -f mmseg -o exports/bcss-mmseg
      hisyngen export corpora/mosaic corpora/bezier --source data/BCSS-WSSS -f hf -o exports/bcss-hf \\
          --license cc0-1.0 --tag histopathology --tag breast-cancer
      hisyngen export --source data/WSSS4LUAD -f hf -o exports/luad-real      # real splits only
      hisyngen push exports/bcss-hf --repo-id me/bcss-hisynseg
    """
    from hisyngen.export import export_dataset

    src = open_source_from_options(source, dataset, spec_file)
    command = recorded_command(sys.argv[1:])  # the card shows it: secrets redacted, no local absolute paths
    summary = export_dataset(list(corpora), src, fmt, out, overwrite=overwrite, command=command, license=license_,
                             tags=list(tags) or None, progress=not quiet and not as_json)
    if as_json:
        print_json(summary.to_dict())
        return
    for warning in summary.warnings:
        click.echo(f"warning: {warning}", err=True)
    counts = ", ".join(f"{split} {n}" for split, n in summary.counts.items())
    click.echo(f"{summary.out}: {fmt} export ({counts}) in {summary.seconds:.1f}s")


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--repo-id", required=True, metavar="NAMESPACE/NAME", help="Dataset repository, created when missing.")
@click.option("--private", is_flag=True, help="Create the repository private.")
@click.option("--token", default=None, metavar="TOKEN",
              help="Hugging Face token with write access [default: $HF_TOKEN or the `hf auth login` token].")
@click.option("--revision", default=None, metavar="BRANCH", help="Branch to commit to (created when missing) [default: main].")
def push(folder: str, repo_id: str, private: bool, token: str | None, revision: str | None) -> None:
    """Upload a Hugging Face export FOLDER (from `hisyngen export -f hf`) to the Hub.

    The parquet shards, dataset card and id2label.json go up in one commit; afterwards anyone with
    access loads it with datasets.load_dataset("NAMESPACE/NAME"). Set HF_ENDPOINT for a private Hub.

    \b
    Examples:
      hisyngen push exports/bcss-hf --repo-id me/bcss-hisynseg
      hisyngen push exports/bcss-hf --repo-id my-lab/bcss-hisynseg --private --revision v2
    """
    from hisyngen.export.push import push_export

    url = push_export(folder, repo_id, private=private, token=token, revision=revision)
    click.echo(f"pushed {folder} to {url}")


COMMANDS = [export, push]

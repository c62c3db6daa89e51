"""``hisyngen build`` (source -> exported datasets) and ``hisyngen demo`` (the same on demo data)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

import click

from hisyngen.build.config import paper_count_text, top_level_default
from hisyngen.cli.common import ALLOW_OUTSIDE_ROOT_HELP, print_json
from hisyngen.filtering.select import MAX_ATTEMPTS_DEFAULT, MODES, Selection
from hisyngen.precision import PRECISIONS
from hisyngen.safety import recorded_command, redact

DEMO_SEED = top_level_default("seed")  # the build's: `hisyngen demo` and its printed --train hint leave it out

DEMO_SETTINGS = {
    "count": 48,
    "discriminator": {"epochs": 4, "negatives": 128, "image_size": 96},
    "realism": {"max_images": 96, "epochs": 3, "image_size": 96},
    "export": {"tags": ["demo-data", "synthetic", "histopathology"]},
}
"""A build that runs in a few minutes on a laptop CPU (smaller discriminators, fewer samples)."""


def _command_line() -> str:
    """The command as the export card records it: ``--token`` and token-shaped values redacted."""
    return recorded_command(sys.argv[1:])


def run_build(source: str, out: str, overrides: dict, config_file: str | None, token: str | None, quiet: bool,
              as_json: bool, allow_outside_root: bool = False, show: bool = True) -> dict:
    """Run (or resume) a build; print its summary (as JSON with ``as_json``) unless not ``show``."""
    from hisyngen.build import Build, load_config, render_summary

    config = load_config(config_file, overrides)
    log = (lambda message: None) if quiet or as_json else (lambda message: click.echo(redact(message, (token,)), err=True))
    build = Build(source, out, config, command=_command_line(), token=token, progress=not quiet and not as_json, log=log,
                  allow_outside_root=allow_outside_root)
    summary = build.run()
    if show and as_json:
        print_json(summary)
    elif show:
        click.echo(render_summary(summary))
    return summary


@click.command()
@click.argument("source", type=click.Path(), required=False)
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Build folder (a rerun resumes it).  [required]")
@click.option("-c", "--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="YAML with any setting of --print-config; command-line options win over it.")
@click.option("--dataset", default=None, help="Force a built-in layout: wsss4luad, bcss-wsss, luad-histoseg.")
@click.option("--spec", "spec_file", default=None, type=click.Path(dir_okay=False), help="A custom dataset spec file.")
# Every option defaults to None ("not given": a -c FILE setting stands); the help quotes the
# configuration's defaults (hisyngen.build.config).
@click.option("--strategies", default=None,
              help=f"Comma-separated strategies [default: {','.join(top_level_default('strategies'))}].")
@click.option("-n", "--count", type=int, default=None,
              help=f"Samples kept per strategy [default: {paper_count_text(upper=True)}].")
@click.option("--seed", type=int, default=None, help=f"Random seed [default: {top_level_default('seed')}].")
@click.option("--no-filter", is_flag=True, help="Skip the discriminators: keep every synthetic sample.")
@click.option("--selection", type=click.Choice(MODES), default=None,
              help="rank: keep the most realistic of --oversample x COUNT candidates (known cost); threshold: "
                   f"p_real > {top_level_default('threshold'):g} until COUNT [default: {top_level_default('selection')}].")
@click.option("--oversample", type=float, default=None,
              help=f"rank: candidates scored per kept sample [default: {top_level_default('oversample'):g}].")
@click.option("--paper", is_flag=True,
              help=f"The paper's filter: threshold {Selection.paper().threshold:g} without per-stratum quotas, "
                   "unweighted discriminator training.")
@click.option("--max-attempts", type=int, default=None,
              help=f"threshold: filter candidates per strategy at most [default: {MAX_ATTEMPTS_DEFAULT}]; a rerun "
                   "may raise it.")
@click.option("-w", "--workers", type=click.IntRange(min=1), default=None, help="Synthesis processes [default: all CPUs].")
@click.option("--device", default=None,
              help=f"Discriminator device: auto, cpu, cuda, cuda:1 [default: {top_level_default('device')}].")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help=f"Discriminator arithmetic [default: {top_level_default('precision')} = bf16 where the CPU/GPU has "
                   "native bf16, else fp32].")
@click.option("--push-to-hub", "push_to_hub", default=None, metavar="USER/NAME", help="Push the HF export to this dataset repo.")
@click.option("--private", is_flag=True, default=None, help="Make the pushed dataset private.")
@click.option("--allow-outside-root", "allow_outside_root", is_flag=True, help=ALLOW_OUTSIDE_ROOT_HELP)
@click.option("--token", default=None, help="Hub token [default: HF_TOKEN or the saved login]; never stored.")
@click.option("--print-config", is_flag=True,
              help="Print the configuration (YAML: the defaults, updated by -c FILE and the options given) and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output; print only the summary.")
def build(source, out, config_file, dataset, spec_file, strategies, count, seed, no_filter, selection, oversample,
          paper, max_attempts, workers, device, precision, push_to_hub, private, token, allow_outside_root, print_config, as_json, quiet) -> None:
    """Turn the weakly-labelled dataset SOURCE into ready-to-train datasets.

    inspect -> single-tissue pools -> per strategy: train its discriminator, keep the COUNT most
    realistic of 5 x COUNT fresh samples (per-stratum quotas keep the class mix) -> realism report -> MMSegmentation and Hugging Face exports -> optional push.
    Ends with counts, acceptance rates, discriminator and realism figures, output paths and the
    command that trains DeepLabV3+ on the result. Interrupted? Rerun the same command: finished
    stages are skipped, the output is identical to an uninterrupted run.

    \b
    Examples:
      hisyngen build data/BCSS-WSSS -o builds/bcss
      hisyngen build data/LUAD-HistoSeg -o builds/luad --count 1000 --device cuda
      hisyngen build data/BCSS-WSSS -o builds/bcss -c build.yaml --push-to-hub me/bcss-hisynseg
      hisyngen build --print-config > build.yaml
    """
    overrides: dict = {}
    for key, value in (("dataset", dataset), ("spec", spec_file), ("count", count), ("seed", seed),
                       ("selection", selection), ("oversample", oversample),
                       ("max_attempts", max_attempts), ("workers", workers), ("device", device), ("precision", precision),
                       ("push_to_hub", push_to_hub), ("private", private)):
        if value is not None:
            overrides[key] = value
    if strategies is not None:
        overrides["strategies"] = [s.strip() for s in strategies.split(",") if s.strip()]
    if no_filter:
        overrides["filter"] = False
    if paper:
        if selection == "rank" or oversample is not None:
            raise click.UsageError("--paper is threshold selection without quotas; drop --selection rank/--oversample")
        filter_of_the_paper = Selection.paper()
        overrides.update({"selection": filter_of_the_paper.mode, "stratify": filter_of_the_paper.stratify,
                          "threshold": filter_of_the_paper.threshold})
        overrides["discriminator"] = {"match_classes": False}
    if print_config:
        from hisyngen.build import config_text, load_config

        click.echo(config_text(load_config(config_file, overrides)), nl=False)
        return
    if source is None or out is None:
        raise click.UsageError("SOURCE and --out are required (or --print-config)")
    run_build(source, out, overrides, config_file, token, quiet, as_json, allow_outside_root=allow_outside_root)


def run_demo(out: str | Path, *, seed: int = DEMO_SEED, workers: int | None = None, device: str | None = None,
             quiet: bool = False, as_json: bool = False, train: bool = False, sizes: Any = None,
             settings: dict | None = None, train_args: Sequence[str] = ()) -> dict:
    """``hisyngen demo``: the demo source, its build and, with ``train``, the printed CPU command run and
    evaluated (:func:`hisyngen.demo_training.train_demo`). ``sizes`` (a :class:`hisyngen.sources.demo.DemoSize`),
    ``settings`` (instead of :data:`DEMO_SETTINGS`) and ``train_args`` (appended to the command) make
    the smaller runs of the tests."""
    from hisyngen.demo_training import render_training, train_demo
    from hisyngen.sources.demo import DemoSize, write_demo_source
    from hisyngen.extras import require_openmmlab

    if train:  # before minutes of building
        require_openmmlab("hisyngen demo --train")
    root = Path(out)
    talk = not quiet and not as_json
    if talk:
        click.echo(f"writing demo source (procedural H&E-like textures, NOT real tissue) to {root / 'source'}", err=True)
    write_demo_source(root / "source", seed=seed, sizes=sizes or DemoSize())
    overrides = {**(DEMO_SETTINGS if settings is None else settings), "seed": seed}
    for key, value in (("workers", workers), ("device", device)):
        if value is not None:
            overrides[key] = value
    summary = run_build(str(root / "source"), str(root / "build"), overrides, None, None, quiet, as_json,
                        show=not (as_json and train))
    if talk:
        click.echo("\nlook at the synthetic images: " + "  ".join(s["preview"] for s in summary["strategies"].values()))
    if not train:
        if talk:
            from hisyngen.extras import OPENMMLAB_INSTALL, missing_openmmlab

            needs = f" (first {OPENMMLAB_INSTALL})" if missing_openmmlab() else ""
            # the same seed, or the demo refuses its own source and build
            again = ["hisyngen", "demo", "--out", str(root), *(["--seed", str(seed)] if seed != DEMO_SEED else []),
                     "--train"]
            click.echo(f"train and evaluate the CPU trial here: {shlex.join(again)}{needs}")
        return summary
    echo = (lambda line: click.echo(line, err=True)) if talk else None
    result = train_demo(root, summary, extra_args=train_args, echo=echo)
    if as_json:
        print_json({**summary, "train": result})
    else:
        click.echo("\n" + render_training(result))
    return {**summary, "train": result}


@click.command()
@click.option("-o", "--out", default="hisyngen-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo source (OUT/source) and its build (OUT/build).")
@click.option("--seed", default=DEMO_SEED, show_default=True, type=int)
@click.option("-w", "--workers", type=click.IntRange(min=1), default=None, help="Synthesis processes [default: all CPUs].")
@click.option("--device", default=None, help="auto, cpu, cuda ...")
@click.option("--train", is_flag=True,
              help="Then run the CPU training command the summary prints (minutes), evaluate it on the demo's test "
                   "masks (mIoU, fwIoU) and write OUT/prediction.png. A rerun reuses a finished training.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def demo(out, seed, workers, device, train, as_json, quiet) -> None:
    """Build datasets from a procedural DEMO source, end to end, in a few minutes on a CPU.

    Writes an H&E-like demo dataset in the BCSS-WSSS layout (clearly labelled as demo data, not
    real tissue) to OUT/source, runs `hisyngen build` on it with small settings into OUT/build,
    and ends with preview PNGs and the training commands for this machine. With --train it also
    runs the CPU one (DeepLabV3+ R18, minutes; needs the mmseg extra), prints its test mIoU and
    fwIoU and writes an image | ground truth | prediction sheet. Reruns resume: finished build
    stages and a finished training are reused (delete OUT/build/train to train again). The same
    on real data:

    \b
      hisyngen build ../shared/data/bcss-wsss-mini -o builds/bcss-mini --count 1000
      hisyngen build ../shared/data/bcss-wsss-mini -o builds/bcss-mini-raw --count 1000 --no-filter
    """
    run_demo(out, seed=seed, workers=workers, device=device, quiet=quiet, as_json=as_json, train=train)

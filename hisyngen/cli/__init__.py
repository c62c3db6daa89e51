"""The ``hisyngen`` command line: a thin shell over the Python API."""

from __future__ import annotations

import click

from hisyngen import __version__
from hisyngen.cli.build import build, demo
from hisyngen.cli.common import HisynGroup
from hisyngen.cli.export import COMMANDS as EXPORT_COMMANDS
from hisyngen.cli.sources import inspect
from hisyngen.cli.filter import filter_command, filter_train, realism
from hisyngen.cli.mmseg import COMMANDS as MMSEG_COMMANDS
from hisyngen.cli.synth import merge, preview, synth
from hisyngen.progress import forced_bars


@click.group(cls=HisynGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="hisyngen")
def cli() -> None:
    """Turn weakly-labelled histopathology patches into fully-supervised segmentation datasets.

    \b
    Typical use:
      hisyngen demo                    the whole pipeline on built-in demo data, in minutes
      hisyngen build DATA -o OUT       source -> filtered synthetic data -> MMSeg + HF exports
      hisyngen inspect DATA            what the dataset holds, what is wrong with it
      hisyngen synth DATA -s bezier -o corpus     synthetic images with exact masks
      hisyngen preview corpus -o grid.png         look at them
      hisyngen filter-train DATA -s bezier -o disc     a real-vs-synthetic discriminator
      hisyngen filter DATA -s bezier -m disc -o kept   keep only samples it believes are real
      hisyngen export kept --source DATA --format hf -o hf   MMSeg / Hugging Face datasets
      hisyngen push hf --repo-id me/name                   to the Hub
      hisyngen train bcss-wsss --data-root EXPORT      DeepLabV3+ with MMSegmentation's train.py
    """
    forced_bars()  # a bad $HISYNGEN_PROGRESS is refused now, not at the first progress bar minutes in


for command in (demo, build, inspect, synth, merge, preview, filter_train, filter_command, realism, *EXPORT_COMMANDS,
                *MMSEG_COMMANDS):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="hisyngen")

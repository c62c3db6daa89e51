"""Shared CLI plumbing: error handling, source options, JSON output.

Commands stay thin: they parse options, call the Python API and print. Heavy modules (torch, mmseg,
datasets) are imported inside command bodies so that ``hisyngen --help`` is instant.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click

from hisyngen.errors import HisynError


class HisynGroup(click.Group):
    """A click group whose commands turn user errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HisynError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except OSError as exc:  # a folder that cannot be created, a full disk, no permission: the user's to fix
            where = f": {exc.filename}" if exc.filename and str(exc.filename) not in str(exc) else ""
            click.echo(f"error: {exc}{where}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted (rerun the same command to resume where it applies)", err=True)
            ctx.exit(130)


def source_options(func: Callable) -> Callable:
    """``--dataset`` / ``--spec``: how to read a SOURCE folder when auto-detection is not wanted."""

    @click.option("--dataset", metavar="NAME", default=None,
                  help="Force a built-in layout: wsss4luad, bcss-wsss or luad-histoseg (default: detect).")
    @click.option("--spec", "spec_file", metavar="FILE", default=None, type=click.Path(dir_okay=False),
                  help="A YAML/JSON dataset spec for a custom dataset (classes, palette, split folders).")
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def open_source_from_options(root: str, dataset: str | None, spec_file: str | None):
    from hisyngen.sources import open_source

    return open_source(root, dataset=dataset, spec=spec_file)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")

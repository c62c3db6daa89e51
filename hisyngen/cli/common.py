"""Shared CLI plumbing: error handling, source options, JSON output.

Commands stay thin: they parse options, call the Python API and print. Heavy modules (torch, mmseg,
datasets) are imported inside command bodies so that ``hisyngen --help`` is instant.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from typing import Any, Callable

import click

from hisyngen.errors import HisynError
from hisyngen.safety import redact


def _secrets() -> tuple[str | None, ...]:
    """Token values this process knows of (``--token`` on its command line, ``$HF_TOKEN``), hidden
    from every message it prints."""
    import os

    argv = sys.argv[1:]
    found: list[str | None] = [os.environ.get("HF_TOKEN")]
    for i, arg in enumerate(argv):
        if arg == "--token" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--token="):
            found.append(arg.split("=", 1)[1])
    return tuple(found)


def echo_error(message: str) -> None:
    """``error: MESSAGE`` on stderr, one line, secrets redacted."""
    click.echo(f"error: {redact(message, _secrets())}", err=True)


class HisynGroup(click.Group):
    """A click group whose commands turn user errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HisynError as exc:
            echo_error(str(exc))
            ctx.exit(1)
        except OSError as exc:  # a folder that cannot be created, a full disk, no permission: the user's to fix
            where = f": {exc.filename}" if exc.filename and str(exc.filename) not in str(exc) else ""
            echo_error(f"{exc}{where}")
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted (rerun the same command to resume where it applies)", err=True)
            ctx.exit(130)


class LibraryDefault(click.Option):
    """An option whose ``default`` is a function reading the library's default when the command
    runs or shows its help, not when the CLI is imported (the strategy dataclasses load OpenCV, the
    training config torch). Unlike click's own callable defaults, the help shows the value."""

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        return super().get_default(ctx, call=True)


class LibraryChoice(click.Choice):
    """``click.Choice`` over names the library lists, read each time they are needed (help, parsing),
    not at import: ``names`` may import modules ``hisyngen --help`` should not wait for."""

    def __init__(self, names: Callable[[], Any]) -> None:
        self._names = names
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        return tuple(self._names())

    @choices.setter
    def choices(self, _given: Any) -> None:  # click.Choice.__init__ stores the empty tuple passed above
        pass


def library_default(module: str, owner: str, name: str) -> Callable[[], Any]:
    """A :class:`LibraryDefault` default: the default of ``name`` in ``module.owner``, a dataclass's
    field or a function's parameter, imported when first needed (a command's default is its API's)."""

    def default() -> Any:
        import dataclasses
        import importlib
        import inspect

        target = getattr(importlib.import_module(module), owner)
        if dataclasses.is_dataclass(target):
            return next(f.default for f in dataclasses.fields(target) if f.name == name)
        return inspect.signature(target).parameters[name].default

    return default


ALLOW_OUTSIDE_ROOT_HELP = ("Accept manifest rows and spec folders that point outside the source root "
                           "(../x, absolute paths); refused by default.")


def source_options(func: Callable) -> Callable:
    """``--dataset`` / ``--spec`` / ``--allow-outside-root``: how to read a SOURCE.

    ``--allow-outside-root`` is kept in the click context rather than passed to the command, so that
    every command reading a source gets it without a parameter of its own;
    :func:`open_source_from_options` reads it from there.
    """

    @click.option("--dataset", metavar="NAME", default=None,
                  help="Force a built-in layout: wsss4luad, bcss-wsss or luad-histoseg (default: detect).")
    @click.option("--spec", "spec_file", metavar="FILE", default=None, type=click.Path(dir_okay=False),
                  help="A YAML/JSON dataset spec for a custom dataset (classes, palette, split folders).")
    @click.option("--allow-outside-root", "allow_outside_root", is_flag=True, help=ALLOW_OUTSIDE_ROOT_HELP)
    @functools.wraps(func)
    def wrapper(*args: Any, allow_outside_root: bool = False, **kwargs: Any) -> Any:
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            ctx.meta["hisyngen.allow_outside_root"] = allow_outside_root
        return func(*args, **kwargs)

    return wrapper


def open_source_from_options(root: str, dataset: str | None, spec_file: str | None):
    from hisyngen.sources import open_source

    ctx = click.get_current_context(silent=True)
    allow = bool(ctx.meta.get("hisyngen.allow_outside_root")) if ctx is not None else False
    return open_source(root, dataset=dataset, spec=spec_file, allow_outside_root=allow)


def json_safe(data: Any) -> Any:
    """``data`` with every NaN or infinite float as None: JSON has no NaN (an IoU of a class absent
    from both the ground truth and the prediction is one), and a bare ``NaN`` breaks strict readers."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    return data


def print_json(data: Any) -> None:
    json.dump(json_safe(data), sys.stdout, indent=2, sort_keys=False, allow_nan=False)
    sys.stdout.write("\n")

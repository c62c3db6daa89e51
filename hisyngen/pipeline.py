"""Former home of the build (kept so ``from hisyngen.pipeline import Build, load_config, ...`` still
works); the code lives in :mod:`hisyngen.build`."""

from __future__ import annotations

from typing import Any

from hisyngen.build.config import NOT_IDENTITY, config_text, load_config, merge_config
from hisyngen.build.report import render_summary, train_commands
from hisyngen.build.stages import Build
from hisyngen.spec import paper_count, paper_epochs

__all__ = ["Build", "DEFAULTS", "NOTES", "NOT_IDENTITY", "config_text", "load_config", "merge_config",
           "paper_count", "paper_epochs", "render_summary", "train_commands"]


def __getattr__(name: str) -> Any:  # DEFAULTS, NOTES: built on first use (hisyngen.build.config)
    from hisyngen.build import config

    if name in ("DEFAULTS", "NOTES"):
        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

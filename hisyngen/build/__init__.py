"""``hisyngen build``: weakly-labelled source -> filtered synthetic corpora -> MMSeg + HF exports.

:mod:`~hisyngen.build.config` (the settings: defaults, notes, validation, ``--print-config``),
:mod:`~hisyngen.build.stages` (:class:`Build`: the stages, their markers and resumption) and
:mod:`~hisyngen.build.report` (summary and training commands). The names below are loaded on first
use, so the CLI reads the configuration's defaults without importing the stages' dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "BuildConfig": "config", "DEFAULTS": "config", "NOTES": "config", "NOT_IDENTITY": "config",
    "config_text": "config", "defaults": "config", "load_config": "config", "merge_config": "config",
    "Build": "stages", "build_summary": "report", "render_summary": "report", "train_commands": "report",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)

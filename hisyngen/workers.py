"""How many worker processes to start by default (library and CLI share it; no heavy imports:
the CLI reads it for its ``--workers`` default at startup)."""

from __future__ import annotations

import os


def default_workers() -> int:
    """CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)

"""Exporting corpora and the real source splits for MMSegmentation and Hugging Face, and pushing to the Hub.

:func:`export_dataset` is the one entry point for both formats (``hisyngen export``);
:func:`hisyngen.export.push.push_export` uploads a Hugging Face export (``hisyngen push``).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from hisyngen.errors import HisynError
from hisyngen.export.common import FORMATS, SPLITS, ExportPlan
from hisyngen.export.output import check_output, staged_output
from hisyngen.safety import output_lock, write_marker

__all__ = ["ExportSummary", "export_dataset"]


@dataclass
class ExportSummary:
    """What an export wrote."""

    out: str
    format: str
    counts: dict[str, int]
    strategies: list[str]
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.out, "format": self.format, "counts": self.counts, "strategies": self.strategies,
                "seconds": round(self.seconds, 2), "warnings": self.warnings}


def export_dataset(
    corpora: Iterable[str | Path],
    source: Any,
    fmt: str,
    out: str | Path,
    *,
    overwrite: bool = False,
    command: str | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
    max_shard_bytes: int | None = None,
    progress: bool = False,
) -> ExportSummary:
    """Export ``corpora`` (folders) and the real splits of ``source`` (a :class:`~hisyngen.sources.Source`).

    ``fmt`` is ``mmseg`` or ``hf``. The export is built in a temporary sibling of ``out`` and renamed
    into place only when complete; a non-empty ``out`` needs ``overwrite`` (and must be an earlier
    export: it carries the ``.hisyngen.json`` marker). ``command``, ``license``, ``tags`` and
    ``max_shard_bytes`` apply to the ``hf`` format. Another export to the same ``out`` at the same
    time is refused (``out/.lock``, carried into the new folder when it replaces the old one).
    """
    if fmt not in FORMATS:
        raise HisynError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    out = Path(out)
    with output_lock(out):
        return _export(corpora, source, fmt, out, overwrite=overwrite, command=command, license=license, tags=tags,
                       max_shard_bytes=max_shard_bytes, progress=progress)


def _export(corpora: Iterable[str | Path], source: Any, fmt: str, out: Path, *, overwrite: bool, command: str | None,
            license: str | None, tags: list[str] | None, max_shard_bytes: int | None, progress: bool) -> ExportSummary:
    from hisyngen.progress import progress_bar as tqdm  # a bar on a terminal, log lines elsewhere

    started = time.perf_counter()
    corpora = [Path(c) for c in corpora]
    check_output(out, overwrite, [*corpora, Path(source.root)])
    plan = ExportPlan(corpora, source)
    expected = plan.check_files()
    if fmt == "mmseg":
        from hisyngen.export.mmseg import write_mmseg as write
    else:
        import datasets  # noqa: F401  (slow import: before the progress bar starts, not inside it)

        from hisyngen.export.hf import DEFAULT_LICENSE, MAX_SHARD_BYTES, write_hf

        write = functools.partial(write_hf, command=command, license=license or DEFAULT_LICENSE, tags=tags,
                                  max_shard_bytes=max_shard_bytes or MAX_SHARD_BYTES)
    with staged_output(out) as stage, tqdm(total=sum(expected.values()), desc=f"export {fmt} -> {out.name}",
                                           unit="img", disable=not progress, smoothing=0.1) as bar:
        counts = write(plan, stage, on_sample=lambda: bar.update(1))
        if counts != expected:  # a manifest or source folder changed while we were writing
            raise HisynError(f"the inputs changed during the export (expected {expected}, wrote {counts}); rerun it")
        write_marker(stage, f"export-{fmt}")
    return ExportSummary(out=str(out), format=fmt, counts={s: counts[s] for s in SPLITS}, strategies=plan.strategies,
                         seconds=time.perf_counter() - started, warnings=plan.warnings)

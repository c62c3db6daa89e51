"""The folder an export is written to: refusing one that would lose data, building beside it, swapping.

An export is built in a temporary sibling folder that replaces ``--out`` only when everything
succeeded; ``--overwrite`` replaces only a folder that carries an export's marker.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from hisyngen.errors import HisynError
from hisyngen.safety import LOCK, MARKER, has_marker, user_entries


EXPORT_KINDS = ("export-mmseg", "export-hf")
"""The marker kinds (:func:`hisyngen.safety.write_marker`) of the two export formats."""


def is_export(folder: Path) -> bool:
    """True for a folder written by ``hisyngen export`` (either format): it carries the marker.

    The marker, not the presence of ``metainfo.json``, decides: anyone's folder may hold a file of
    that name, and ``--overwrite`` deletes what it replaces.
    """
    return has_marker(folder, EXPORT_KINDS)


def check_output(out: Path, overwrite: bool, inputs: Iterable[Path]) -> None:
    """Refuse an output that would lose data: non-empty without ``--overwrite``, not an export, an input."""
    resolved = out.resolve()
    for path in inputs:
        path = Path(path).resolve()
        if path == resolved or resolved in path.parents:
            raise HisynError(f"--out {out} would replace the input {path}; choose another folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise HisynError(f"--out {out} exists and is not a folder")
    if not user_entries(out):
        return
    if not overwrite:
        raise HisynError(f"{out} exists and is not empty; pass --overwrite to replace it or choose another --out")
    if not is_export(out):
        raise HisynError(f"{out} is not a hisyngen export; refusing to replace it with --overwrite (it has no "
                         f"{MARKER} marker; delete it yourself)")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out`` to build into; on success it becomes ``out``.

    On any error the temporary folder is removed, an existing ``out`` is left untouched and parent
    folders made for it are removed again.
    """
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in (*out.parent.glob(f".{out.name}.*.partial"), *out.parent.glob(f".{out.name}.*.old")):
        # Left behind by an export that was killed; the owner's pid is in the name, so a concurrent
        # export to the same place (still running) keeps its folder.
        owner = stale.name[len(out.name) + 2:].split(".", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".partial", dir=out.parent))
    try:
        yield stage
        if (out / LOCK).is_file():
            # The caller's lock (hisyngen.safety.output_lock) lives in out/.lock; a hard link makes the
            # new folder's .lock the same, still locked, file, so no other run can slip in at the swap.
            try:
                os.link(out / LOCK, stage / LOCK)
            except OSError:  # a file system without hard links: the new folder gets a lock file at the next run
                pass
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".old", dir=out.parent))
            os.replace(out, old)  # replacing a folder by an empty one is atomic on POSIX
            try:
                os.replace(stage, out)
            except BaseException:
                os.replace(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in made:  # innermost first; stops at one that is no longer empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)

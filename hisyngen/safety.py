"""What hisyngen refuses and never writes: sample ids, secrets, folders it did not make, two writers.

One home for each rule (README, "Security and data safety"):

* :func:`check_sample_id`: an id read from a file hisyngen did not just write (split files,
  ``real.jsonl``, a corpus ``manifest.jsonl``) becomes a file name, so it must be one name: no
  ``/``, ``\\``, ``:``, ``..``, leading dot or control characters.
* :func:`redact` / :func:`redact_argv` / :func:`recorded_command`: Hub tokens (``--token VALUE``,
  ``--token=VALUE``, anything shaped like an ``hf_`` token) never reach a card, report, log line or
  error message.
* :func:`write_marker` / :func:`read_marker`: ``.hisyngen.json`` (format name and version) in every
  folder hisyngen writes; ``--overwrite`` replaces only folders that carry one.
* :func:`output_lock` / :func:`locks_output`: an exclusive ``flock`` on ``OUT/.lock`` for the whole of
  a command that writes ``OUT``; a second one refuses at once ("OUT is in use by pid N").
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from hisyngen.errors import HisynError

# --- sample ids -----------------------------------------------------------------------------------

MAX_ID_LENGTH = 200
"""Ids become ``<id>.png`` file names: 200 characters leave room within the usual 255-byte limit."""

_BAD_ID = re.compile(r"[/\\:\x00-\x1f\x7f]")


def sample_id_problem(value: object) -> str | None:
    """Why ``value`` cannot be a sample id (None when it can)."""
    if not isinstance(value, str) or not value:
        return "a sample id must be a non-empty string"
    if len(value) > MAX_ID_LENGTH:
        return f"a sample id has at most {MAX_ID_LENGTH} characters"
    if _BAD_ID.search(value):
        return "a sample id may not contain '/', '\\', ':' or control characters (it names one file)"
    if ".." in value or value.startswith("."):
        return "a sample id may not contain '..' or start with '.'"
    if value != value.strip():
        return "a sample id may not start or end with white space"
    return None


def check_sample_id(value: object, where: str) -> str:
    """``value`` if it is a valid sample id, else a one-line :class:`HisynError` naming ``where``
    (``FILE:LINE``)."""
    problem = sample_id_problem(value)
    if problem is not None:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise HisynError(f"{where}: sample id {shown} is refused: {problem}")
    return value  # type: ignore[return-value]


# --- secrets --------------------------------------------------------------------------------------

SECRET_OPTIONS = ("--token",)
"""Command-line options whose value is a secret."""

REDACTED = "***"
# Hub user access tokens are "hf_" and 30+ letters/digits; a folder called "hf_export" is not one.
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}")
_SECRET_OPTION = re.compile(r"(--token)(=|\s+)(?:'[^']*'|\"[^\"]*\"|\S+)")


def redact(text: str, secrets: tuple[str | None, ...] = ()) -> str:
    """``text`` with secret option values, ``hf_``-shaped tokens and the given ``secrets`` replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _SECRET_OPTION.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _HF_TOKEN.sub(REDACTED, text)


def redact_argv(argv: list[str]) -> list[str]:
    """Command-line arguments with the values of :data:`SECRET_OPTIONS` and token-shaped words hidden."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
        elif arg in SECRET_OPTIONS:
            out.append(arg)
            hide_next = True
        elif arg.split("=", 1)[0] in SECRET_OPTIONS and "=" in arg:
            out.append(f"{arg.split('=', 1)[0]}={REDACTED}")
        else:
            out.append(_HF_TOKEN.sub(REDACTED, arg))
    return out


def _local_path(arg: str) -> str:
    """An absolute path argument as its last component: exports never carry local paths."""
    option, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if os.path.isabs(value) and len(value) > 1:
        value = Path(value).name or value
    return f"{option}{eq}{value}"


def recorded_command(argv: list[str] | None = None) -> str:
    """The ``hisyngen ...`` command line as a card records it: secrets redacted, absolute paths
    shortened to their last component (``argv[0]`` is an install path and is dropped)."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["hisyngen", *(_local_path(a) for a in redact_argv(list(args)))])


# --- marker ---------------------------------------------------------------------------------------

MARKER = ".hisyngen.json"
"""Written into every folder hisyngen makes (exports, corpora, builds): what it is, which version."""
MARKER_VERSION = 1
LOCK = ".lock"
OWN_FILES = frozenset({MARKER, LOCK})
"""Files hisyngen puts into an output folder before anything else; they do not make it non-empty."""


def write_marker(folder: Path, kind: str) -> None:
    """Record in ``folder`` that hisyngen wrote it, as ``kind`` (``export-mmseg``, ``corpus``...)."""
    from hisyngen import __version__
    from hisyngen.imageio import atomic_write_text

    atomic_write_text(Path(folder) / MARKER, json.dumps(
        {"format": f"hisyngen-{kind}", "version": MARKER_VERSION, "hisyngen_version": __version__}, indent=2) + "\n")


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of ``folder``, or None when it has none (or an unreadable one)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith("hisyngen-"):
        return None
    return data


def has_marker(folder: Path, kinds: tuple[str, ...]) -> bool:
    marker = read_marker(folder)
    return marker is not None and marker.get("format") in {f"hisyngen-{k}" for k in kinds}


def user_entries(folder: Path) -> list[Path]:
    """What ``folder`` holds besides hisyngen's own lock and marker files."""
    return [p for p in Path(folder).iterdir() if p.name not in OWN_FILES]


# --- exclusive lock -------------------------------------------------------------------------------

class OutputInUse(HisynError):
    """Another process holds the lock of an output folder."""


def _pid_of(handle: Any) -> str:
    try:
        handle.seek(0)
        text = handle.read().strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


@contextmanager
def file_lock(path: Path, what: str, *, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created, holding our pid) while the block runs.

    ``flock`` is released by the kernel when the process dies, so a lock file left by a killed run
    never blocks a later one. Without ``wait`` a held lock raises :class:`OutputInUse` at once.
    """
    import fcntl

    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                pid = _pid_of(handle)
                holder = f"pid {pid}" if pid else "another process"
                raise OutputInUse(f"{what} is in use by {holder} (another hisyngen command is writing there); "
                                  "wait for it to finish or choose another folder") from None
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            # Emptied while still held: a finished run leaves no pid behind (and folders made by equal
            # commands stay byte-identical); a killed one leaves its pid, and flock is released anyway.
            handle.seek(0)
            handle.truncate()
    finally:
        handle.close()  # releases the lock


@contextmanager
def output_lock(out: str | Path) -> Iterator[None]:
    """Exclusive use of the output folder ``out`` (a lock on ``out/.lock``) for the block.

    ``out`` is created when missing. If the block fails, a lock file and folders this call made are
    removed again (a refused command leaves nothing behind); after success the (empty) lock file stays.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HisynError(f"{out} exists and is not a folder")
    home, lock = out, out / LOCK
    made = [p for p in (home, *home.parents) if not p.exists()]
    home.mkdir(parents=True, exist_ok=True)
    created = not lock.exists()
    failed = True
    try:
        with file_lock(lock, str(out)):
            yield
        failed = False
    finally:
        # A failed (refused) command leaves no lock file it made, and no folder it made, behind.
        if failed and created:
            lock.unlink(missing_ok=True)
        if failed and made:
            for folder in made:  # innermost first; stops at one that is not empty
                try:
                    folder.rmdir()
                except OSError:
                    break


def locks_output(parameter: str = "out") -> Callable[[Callable], Callable]:
    """Decorate a function that writes the folder passed as ``parameter``: it runs under
    :func:`output_lock` of that folder (so startup cleanup never touches another run's files)."""

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = signature.bind(*args, **kwargs).arguments[parameter]
            with output_lock(out):
                return func(*args, **kwargs)

        return wrapper

    return decorate

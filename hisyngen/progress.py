"""Progress reporting that suits both a terminal and a cluster log: the one home of hisyngen's bars.

On a terminal (stderr is a tty) :func:`progress_bar` is a tqdm bar. Anywhere else (a SLURM job,
``nohup``, CI, a pipe) a bar redrawn with carriage returns turns a log file into one huge line, so
it writes a plain line at the start and every :data:`LOG_EVERY_PERCENT` percent instead::

    mosaic -> corpus: 30% (4,320/14,400 img), 01:12 elapsed, ~02:48 left

``HISYNGEN_PROGRESS=1`` forces bars (e.g. ``srun --pty``), ``HISYNGEN_PROGRESS=0`` forces lines.
Call sites use it as a drop-in for ``tqdm(...)`` (``from hisyngen.progress import progress_bar as
tqdm``): the same arguments, and the part of tqdm's interface hisyngen uses (iteration, ``with``,
``update``, ``n``, ``set_postfix``, ``set_postfix_str``, ``close``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator

from hisyngen.errors import HisynError

PROGRESS_ENV = "HISYNGEN_PROGRESS"
"""``1``: tqdm bars even without a terminal; ``0``: log lines even on a terminal; unset: decided by stderr."""

LOG_EVERY_PERCENT = 10
"""Without a terminal, one line per this many percent (10 lines a task keep a SLURM log readable)."""


def forced_bars() -> bool | None:
    """``$HISYNGEN_PROGRESS``: True (bars), False (lines) or None (unset); any other value is a one-line
    error. The CLI calls it at start, so a typo fails at once rather than at the first bar, minutes in."""
    text = os.environ.get(PROGRESS_ENV, "").strip()
    if text in ("0", "1"):
        return text == "1"
    if text:
        raise HisynError(f"{PROGRESS_ENV}={text!r} must be 1 (progress bars) or 0 (a log line every "
                         f"{LOG_EVERY_PERCENT}%)")
    return None


def bars_wanted() -> bool:
    """Whether progress is drawn as tqdm bars: ``$HISYNGEN_PROGRESS`` if set, else whether stderr is a tty."""
    forced = forced_bars()
    if forced is not None:
        return forced
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(iterable: Iterable | None = None, **kwargs: Any) -> Any:
    """``tqdm(iterable, **kwargs)`` on a terminal (or when forced), else a :class:`LogProgress`."""
    if kwargs.get("disable") or bars_wanted():
        from tqdm import tqdm

        return tqdm(iterable, **kwargs)  # disabled: tqdm's no-op bar, exactly as before
    return LogProgress(iterable, **kwargs)


def _clock(seconds: float) -> str:
    from tqdm import tqdm

    return tqdm.format_interval(seconds)  # the same [H:]MM:SS as a bar shows


class LogProgress:
    """tqdm's interface (the part hisyngen uses), reporting as plain lines on stderr.

    A line when the bar starts, each time the count passes another :data:`LOG_EVERY_PERCENT`
    percent of ``total``, and at ``close()`` if the count moved since the last line (a task that
    stopped early). Without a known total only the first and the last line are written. tqdm's
    display options (``smoothing``, ``leave``, ``dynamic_ncols``, ...) are accepted and unused.
    """

    def __init__(self, iterable: Iterable | None = None, desc: str | None = None, total: float | None = None,
                 initial: float = 0, unit: str = "it", **_display: Any) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable = iterable
        self.desc = desc or ""
        self.total = total
        self.unit = unit
        self.n = initial
        self._initial = initial
        self._started = time.monotonic()
        self._postfix = ""
        self._closed = False
        self._next_percent = (self._percent() // LOG_EVERY_PERCENT + 1) * LOG_EVERY_PERCENT
        self._logged_n = initial
        self._write()

    def _percent(self) -> int:
        if not self.total:
            return 100 if self.total == 0 else 0
        return int(100 * self.n / self.total)

    def _line(self) -> str:
        elapsed = time.monotonic() - self._started
        if self.total is None:
            parts = [f"{self.n:,} {self.unit}"]
        else:
            parts = [f"{self._percent()}% ({self.n:,}/{self.total:,} {self.unit})"]
        parts.append(f"{_clock(elapsed)} elapsed")
        done = self.n - self._initial
        if self.total and 0 < done and self.n < self.total:
            parts.append(f"~{_clock(elapsed / done * (self.total - self.n))} left")
        if self._postfix:
            parts.append(self._postfix)
        prefix = f"{self.desc}: " if self.desc else ""
        return prefix + ", ".join(parts)

    def _write(self) -> None:
        self._logged_n = self.n
        print(self._line(), file=sys.stderr, flush=True)

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.total and self._percent() >= self._next_percent:
            self._next_percent = (self._percent() // LOG_EVERY_PERCENT + 1) * LOG_EVERY_PERCENT
            self._write()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = str(s)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{key}={value}" for key, value in items.items())  # tqdm's k=v format

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.n != self._logged_n:
            self._write()

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("LogProgress without an iterable cannot be iterated")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

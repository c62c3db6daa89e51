"""User-facing errors: the CLI prints these as one line and exits non-zero, without a traceback."""

from __future__ import annotations


class HisynError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ImageReadError(HisynError):
    """An image or mask file that cannot be used; the message names the file."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # survive pickling across worker processes
        return (type(self), (self.path, self.reason))

"""What a source is once read: its records (train images with labels, val/test image/mask pairs), the
problems met on the way, and the rule that paths read from a source stay inside its root.

Readers: :mod:`hisyngen.sources.layout` (benchmarks, class folders) and :mod:`hisyngen.sources.manifest`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from hisyngen.errors import HisynError
from hisyngen.spec import DatasetSpec


@dataclass(frozen=True)
class Record:
    """One image of a source: a train image with its label vector, or a val/test image with its mask."""

    id: str
    """Unique within the source: the path relative to the root, without suffix, '/'-separated."""
    path: Path
    split: str
    labels: tuple[int, ...] | None = None
    mask_path: Path | None = None

    @property
    def is_single_tissue(self) -> bool:
        return self.labels is not None and sum(self.labels) == 1

    @property
    def tissue(self) -> int:
        """The class of a single-tissue record."""
        if not self.is_single_tissue:
            raise ValueError(f"{self.id} is not single-tissue")
        return self.labels.index(1)  # type: ignore[union-attr]


@dataclass(frozen=True)
class Problem:
    """A skipped file or a questionable fact about the source; ``kind`` is a short stable code."""

    kind: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass
class Source:
    """A source dataset read from disk: spec, records per split and the problems met on the way."""

    root: Path
    spec: DatasetSpec
    layout: str
    splits: dict[str, list[Record]]
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Ids name output files and provenance, so two files with one stem (a.png, a.tif) cannot both stay.
        seen: set[str] = set()
        for split, records in self.splits.items():
            kept = []
            for record in records:
                if record.id in seen:
                    self.problems.append(Problem("duplicate-id", str(record.path), f"another image is also named {record.id}.*"))
                    continue
                seen.add(record.id)
                kept.append(record)
            self.splits[split] = kept

    @property
    def train(self) -> list[Record]:
        return self.splits.get("train", [])

    @property
    def val(self) -> list[Record]:
        return self.splits.get("val", [])

    @property
    def test(self) -> list[Record]:
        return self.splits.get("test", [])

    def single_tissue_pools(self) -> dict[int, list[Record]]:
        """Single-tissue train records per class index (every class present, possibly empty)."""
        pools: dict[int, list[Record]] = {c: [] for c in range(self.spec.num_classes)}
        for record in self.train:
            if record.is_single_tissue:
                pools[record.tissue].append(record)
        return pools

    def multi_tissue(self) -> list[Record]:
        """Train records with two or more tissue labels (the discriminator's real images)."""
        return [r for r in self.train if r.labels is not None and sum(r.labels) >= 2]

    def fingerprint(self, records: Iterable[Record] | None = None, with_mtime: bool = True) -> str:
        """A short hash of the spec and the records' ids, labels, sizes (and modification times).

        Without mtimes it identifies the same data copied to another machine (corpus shards);
        with them it also notices files rewritten in place (the decoded-pool cache).
        """
        digest = hashlib.sha256(json.dumps(self.spec.to_dict(), sort_keys=True).encode())
        for record in sorted(records if records is not None else self.train, key=lambda r: r.id):
            stat = record.path.stat()
            mtime = stat.st_mtime_ns if with_mtime else 0
            digest.update(f"{record.id}\0{record.labels}\0{stat.st_size}\0{mtime}\n".encode())
        return digest.hexdigest()[:16]


def inside_root(root: Path, text: str, where: str, allow: bool) -> str:
    """``text`` (a path relative to ``root``, or absolute) as a '/'-separated path relative to
    ``root``; one that leaves ``root`` (``../x``, an absolute path elsewhere) is refused unless
    ``allow``, and then given as ``../x`` (relative still: ids and exports never hold absolute paths).

    The check is lexical: a symbolic link inside the root is the user's own choice and is followed.
    """
    base = os.path.abspath(root)
    target = os.path.normpath(os.path.join(base, text))
    relative = os.path.relpath(target, base)
    if (relative == os.pardir or relative.startswith(os.pardir + os.sep)) and not allow:
        raise HisynError(f"{where}: {text!r} is outside the source folder {root}; move it inside or pass "
                         "--allow-outside-root")
    return Path(relative).as_posix()


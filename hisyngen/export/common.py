"""What goes into an export, shared by the MMSeg and Hugging Face writers.

An :class:`ExportPlan` combines zero or more synthesized corpora with the real source dataset and
streams :class:`ExportSample` records per split (``train`` synthetic, ``train_real``, ``val``,
``test``) without holding them all in memory: only the ids (for uniqueness) are kept. It also owns
the per-sample rules both formats share: export ids, when an image may be copied byte-for-byte,
which mask values are valid and the background -> 255 mapping. The output folder itself (staging,
``--overwrite``) is :mod:`hisyngen.export.output`'s.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from hisyngen.errors import HisynError, ImageReadError
from hisyngen.imageio import check_pixels, encode_mask_png, encode_rgb_png, read_mask, read_rgb
from hisyngen.spec import IGNORE_INDEX, DatasetSpec

SPLITS = ("train", "train_real", "val", "test")
"""Export splits: synthetic train, real (weakly labelled) train, real val and test."""

REAL = "real"
"""The ``strategy`` of every real (source) image."""

FORMATS = ("mmseg", "hf")

_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_LABEL_FIELDS = ("classes", "palette", "background_index", "ignore_index")
"""The spec fields that give mask values their meaning; corpora and source must agree on them."""


def sanitize_id(text: str) -> str:
    """A file stem made of ``[A-Za-z0-9._+-]`` only: other runs become ``_``; never hidden or empty."""
    cleaned = _BAD_ID_CHARS.sub("_", text).strip("_.")
    return cleaned or "sample"


class IdAllocator:
    """Hands out sanitised ids unique within one split (case-insensitively: macOS/Windows folders)."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def take(self, text: str) -> str:
        base = sanitize_id(text)
        candidate, n = base, 1
        while candidate.casefold() in self._used:
            n += 1
            candidate = f"{base}-{n}"
        self._used.add(candidate.casefold())
        return candidate


def strip_common_folder(ids: list[str]) -> list[str]:
    """Record ids without the folder all of them share (``val/img/x`` -> ``x``), keeping subfolders."""
    parents = [os.path.dirname(i) for i in ids]
    common = os.path.commonpath(parents) if parents and all(parents) else ""
    return [i[len(common) + 1:] if common else i for i in ids]


@dataclass(frozen=True)
class ExportSample:
    """One image of the export and everything both formats record about it."""

    split: str
    id: str
    image: Path
    mask: Path | None
    """Synthetic or ground-truth mask; None for real train images."""
    strategy: str
    """The corpus strategy, or ``real``."""
    labels: tuple[int, ...] | None
    """Image-level 0/1 labels (synthetic, train_real); None for val/test (read from the mask)."""
    seed: int | None = None
    disc_score: float | None = None
    sources: tuple[str, ...] = ()
    """Source record ids the image was made from (a real image: itself)."""
    source_path: str | None = None
    """Real images: the file's path relative to the source root."""

    @property
    def is_synthetic(self) -> bool:
        return self.strategy != REAL


@dataclass
class PreparedSample:
    """A sample ready to write: PNG bytes of the image and (when it has one) of its mask."""

    sample: ExportSample
    image_png: bytes
    mask: np.ndarray | None
    mask_png: bytes | None

    def tissues(self, num_classes: int) -> list[int]:
        """Class indices present: from the labels, or from the mask for val/test."""
        if self.sample.labels is not None:
            return [c for c, v in enumerate(self.sample.labels) if v]
        assert self.mask is not None
        counts = np.bincount(self.mask.ravel(), minlength=256)
        return [c for c in range(num_classes) if counts[c]]


def label_fields(spec: DatasetSpec | dict[str, Any]) -> dict[str, Any]:
    data = spec.to_dict() if isinstance(spec, DatasetSpec) else spec
    return {k: data.get(k) for k in _LABEL_FIELDS}


def _describe_spec(spec: DatasetSpec) -> str:
    return f"{spec.name}: classes {', '.join(spec.classes)}, background index {spec.background_index}"


class ExportPlan:
    """Corpora + source, checked for compatibility; streams the samples of each split."""

    def __init__(self, corpora: Iterable[str | Path], source: Any) -> None:
        from hisyngen.corpus import Corpus

        self.source = source
        self.spec: DatasetSpec = source.spec
        self.corpora = []
        seen: dict[Path, Path] = {}
        for folder in corpora:
            corpus = Corpus(folder)
            key = corpus.folder.resolve()
            if key in seen:
                raise HisynError(f"corpus {folder} is given twice (also as {seen[key]})")
            seen[key] = Path(folder)
            if not corpus.complete:
                raise HisynError(f"{corpus.folder} is an incomplete corpus (no manifest.jsonl): rerun the command that made it")
            if label_fields(corpus.config.spec) != label_fields(self.spec):
                differ = [k for k in _LABEL_FIELDS if label_fields(corpus.config.spec)[k] != label_fields(self.spec)[k]]
                raise HisynError(
                    f"mixed class specs: corpus {corpus.folder} ({_describe_spec(corpus.spec)}) vs source "
                    f"{source.root} ({_describe_spec(self.spec)}); they differ in {', '.join(differ)}"
                )
            self.corpora.append(corpus)
        self.strategies = sorted({c.config.strategy for c in self.corpora})
        if REAL in self.strategies:
            raise HisynError(f"a corpus strategy may not be called {REAL!r} (it marks real images)")
        self.warnings = self._source_warnings()

    def _source_warnings(self) -> list[str]:
        # Files the source reader skipped (a val image without its mask, an unparseable name...) are
        # not exported; say so, or a user finds 13 val images where the folder holds 14.
        by_kind: dict[str, list[Any]] = {}
        for problem in self.source.problems:
            if problem.kind == "missing-split":  # shows as an empty split in the counts
                continue
            by_kind.setdefault(problem.kind, []).append(problem)
        warnings = [f"source {self.source.root}: {len(found)} x {kind} not exported, e.g. {found[0].path}: "
                    f"{found[0].message} (`hisyngen inspect` lists all)" for kind, found in by_kind.items()]
        if not self.corpora:
            return warnings
        singles = [r for r in self.source.train if r.is_single_tissue]
        fingerprint = self.source.fingerprint(singles, with_mtime=False)
        return warnings + [
            f"{c.folder} was generated from another source than {self.source.root} "
            f"(fingerprint {c.config.source.get('fingerprint')} vs {fingerprint})"
            for c in self.corpora if c.config.source.get("fingerprint") != fingerprint
        ]

    def samples(self, split: str) -> Iterator[ExportSample]:
        """The samples of ``split`` in a fixed order, with ids unique within the split."""
        ids = IdAllocator()
        if split == "train":
            for corpus in self.corpora:
                for row in corpus.rows():
                    yield ExportSample(
                        split=split, id=ids.take(row["id"]), image=corpus.image_path(row), mask=corpus.mask_path(row),
                        strategy=corpus.config.strategy, labels=tuple(int(v) for v in row["labels"]),
                        seed=row.get("seed", corpus.config.seed), disc_score=row.get("disc_score"),
                        sources=tuple(row.get("sources", ())),
                    )
            return
        records = {"train_real": self.source.train, "val": self.source.val, "test": self.source.test}[split]
        for record, stem in zip(records, strip_common_folder([r.id for r in records])):
            yield ExportSample(
                split=split, id=ids.take(stem), image=record.path, mask=record.mask_path, strategy=REAL,
                labels=record.labels if split == "train_real" else None, sources=(record.id,),
                source_path=self._relative(record.path),
            )

    def _relative(self, path: Path) -> str:
        """``path`` relative to the source root (``../x`` for a file outside it that the user
        allowed): an export never carries an absolute local path."""
        root = Path(self.source.root)
        base = root if root.is_dir() else root.parent  # a manifest source: paths are relative to its folder
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(base))).as_posix()

    def check_files(self) -> dict[str, int]:
        """Refuse missing image/mask files up front (naming the first); return the count per split."""
        counts = {}
        for split in SPLITS:
            n = 0
            for sample in self.samples(split):
                for path in (sample.image, sample.mask):
                    if path is not None and not path.is_file():
                        raise HisynError(f"missing file {path} ({sample.split} sample {sample.id})")
                n += 1
            counts[split] = n
        if not any(counts.values()):
            raise HisynError("nothing to export: no corpus samples and the source has no images")
        return counts

    def prepare(self, sample: ExportSample) -> PreparedSample:
        """Image PNG bytes (copied when possible) and the validated, palette-encoded mask."""
        image_png, (width, height) = png_image_bytes(sample.image)
        if sample.mask is None:
            return PreparedSample(sample, image_png, None, None)
        mask = export_mask(sample, self.spec)
        if mask.shape != (height, width):
            raise HisynError(f"{sample.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {sample.image} is {width}x{height}")
        return PreparedSample(sample, image_png, mask, encode_mask_png(mask, self.spec.mask_palette()))


def png_image_bytes(path: Path) -> tuple[bytes, tuple[int, int]]:
    """PNG bytes of an image and its (width, height).

    An 8-bit RGB PNG is copied byte-for-byte; anything else (JPEG, TIFF, grayscale, alpha, 16-bit)
    is decoded with hisyngen's normalisation and re-encoded, so every consumer sees the same RGB.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(path, f"cannot read file ({exc.strerror or exc})") from None
    # IHDR: width, height (big-endian), bit depth, colour type (2 = RGB) at fixed offsets.
    if data[:8] == _PNG_SIGNATURE and len(data) > 26 and data[12:16] == b"IHDR" and data[24] == 8 and data[25] == 2:
        size = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        check_pixels(*size, path)  # copied, not decoded here: every consumer would decode it
        return data, size
    image = read_rgb(path)
    return encode_rgb_png(image), (image.shape[1], image.shape[0])


def export_mask(sample: ExportSample, spec: DatasetSpec) -> np.ndarray:
    """The mask as exported: validated against the spec; real ground truth has background -> 255.

    Synthetic masks may hold ``0..C-1`` and 255; ground truth also the source background index.
    """
    assert sample.mask is not None
    mask = read_mask(sample.mask, spec)
    allowed = np.zeros(256, bool)
    allowed[: spec.num_classes] = True
    allowed[IGNORE_INDEX] = True
    if not sample.is_synthetic:
        allowed[spec.background_index] = True
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    bad = [int(v) for v in present if not allowed[v]]
    if bad:
        kind = "synthetic masks may hold" if sample.is_synthetic else "ground truth may hold"
        valid = f"0..{spec.num_classes - 1}, " + ("" if sample.is_synthetic else f"{spec.background_index} (background), ") + "255"
        raise HisynError(f"{sample.mask}: mask values {bad} are outside the {spec.name} spec ({kind} {valid})")
    if not sample.is_synthetic:
        mask[mask == spec.background_index] = IGNORE_INDEX  # so metrics drop it, as mmseg's IoUMetric does for 255
    return mask

"""Single-tissue pools, decoded once into a memory-mapped pack that every worker shares.

Mosaic draws 16 source crops per sample; decoding a PNG costs several milliseconds, so decoding on
demand would dominate synthesis. A :class:`PoolPack` holds every single-tissue train image as raw
RGB plus its white-background mask in two flat files under a cache folder keyed by the source
fingerprint and the background parameters. Workers open it with ``numpy.memmap``: the operating
system shares the pages between processes and nothing is decoded twice, across runs too.

``index.json`` records the size and a sampled digest of both files; a pack whose files disagree
(truncated, rewritten, from an older version) is rebuilt, never mapped. One process builds a pack at
a time (a lock beside it); another one waits and then uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hisyngen.errors import HisynError, ImageReadError
from hisyngen.imageio import atomic_write_text, read_rgb
from hisyngen.safety import file_lock
from hisyngen.sources.background import BackgroundParams, background_mask
from hisyngen.sources.layout import Problem, Record, Source

PACK_VERSION = 2
"""2: ``index.json`` holds ``files`` (size and digest of pixels.u8 and background.u8)."""
PACK_FILES = ("pixels.u8", "background.u8")
_SAMPLE = 1 << 16


def file_digest(path: Path) -> str:
    """A cheap digest of ``path``: its size and 64 KiB at its start, middle and end (BLAKE2b).

    Reading the whole pack (gigabytes for a large source) on every run would cost seconds; a
    truncated, overwritten or swapped file changes the size or one of these samples.
    """
    import hashlib

    size = path.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as handle:
        for offset in sorted({0, max(0, size // 2 - _SAMPLE // 2), max(0, size - _SAMPLE)}):
            handle.seek(offset)
            digest.update(handle.read(_SAMPLE))
    return digest.hexdigest()


def pack_problem(folder: Path, *, digests: bool = True) -> str | None:
    """Why the pack in ``folder`` cannot be used (None when it can): unreadable index, another
    version, files whose size (or, with ``digests``, sampled digest) differs from the index."""
    try:
        meta = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable index.json ({exc})"
    if not isinstance(meta, dict) or meta.get("version") != PACK_VERSION:
        return f"pack version {meta.get('version') if isinstance(meta, dict) else None} is not {PACK_VERSION}"
    files = meta.get("files") or {}
    for name in PACK_FILES:
        expected = files.get(name) or {}
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != expected.get("size"):
            return f"{name} has {size} bytes, index.json says {expected.get('size')}"
        if digests and file_digest(path) != expected.get("digest"):
            return f"{name} differs from the digest in index.json"
    return None


def default_cache_dir() -> Path:
    """``$HISYNGEN_CACHE`` or ``$XDG_CACHE_HOME/hisyngen`` (``~/.cache/hisyngen``)."""
    if os.environ.get("HISYNGEN_CACHE"):
        return Path(os.environ["HISYNGEN_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hisyngen"


@dataclass(frozen=True)
class PoolEntry:
    id: str
    tissue: int
    offset: int
    height: int
    width: int
    background_fraction: float


class PoolPack:
    """Read-only view of a built pack: ``image(i)``, ``background(i)`` and per-class entry indices."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        problem = pack_problem(self.folder, digests=False)  # sizes: np.memmap of a short file fails obscurely
        if problem is not None:
            raise HisynError(f"{self.folder}: damaged pool pack ({problem}); rerun to rebuild it")
        meta = json.loads((self.folder / "index.json").read_text())
        self.meta = meta
        self.num_classes: int = meta["num_classes"]
        self.background_params = BackgroundParams(**meta["background"])
        self.entries = [PoolEntry(**e) for e in meta["entries"]]
        total = sum(e.height * e.width for e in self.entries)
        # Plain ndarray views of the maps: slicing a np.memmap runs Python hooks on every view,
        # which cost Mosaic (16 tiles per sample) a fifth of its time.
        self._pixels = np.memmap(self.folder / "pixels.u8", np.uint8, "r", shape=(max(total, 1) * 3,)).view(np.ndarray)
        self._background = np.memmap(self.folder / "background.u8", np.uint8, "r", shape=(max(total, 1),)).view(np.ndarray)
        self.by_class: list[np.ndarray] = [
            np.array([i for i, e in enumerate(self.entries) if e.tissue == c], np.int64) for c in range(self.num_classes)
        ]

    def __len__(self) -> int:
        return len(self.entries)

    def tissue(self, index: int) -> int:
        """Class index of entry ``index``."""
        return self.entries[index].tissue

    def background_fraction(self, index: int) -> float:
        """Fraction of white background in entry ``index``."""
        return self.entries[index].background_fraction

    def image(self, index: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) of entry ``index`` (a read-only view into the pack)."""
        e = self.entries[index]
        return self._pixels[3 * e.offset : 3 * (e.offset + e.height * e.width)].reshape(e.height, e.width, 3)

    def background(self, index: int) -> np.ndarray:
        """Boolean (H, W) white-background mask of entry ``index``."""
        e = self.entries[index]
        return self._background[e.offset : e.offset + e.height * e.width].reshape(e.height, e.width).view(bool)

    def class_counts(self) -> list[int]:
        return [len(ids) for ids in self.by_class]

    def preload(self) -> "PoolPack":
        """Read the whole pack into memory (benchmarks; small pools)."""
        self._pixels = np.array(self._pixels)
        self._background = np.array(self._background)
        return self


def pack_key(source: Source, records: list[Record], params: BackgroundParams) -> str:
    return f"{source.spec.name.replace(':', '_').replace('/', '_')}-{source.fingerprint(records)}-t{params.threshold}-s{params.min_size}"


def build_pool_pack(
    source: Source,
    params: BackgroundParams = BackgroundParams(),
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[PoolPack, list[Problem]]:
    """Open the pack of ``source``'s single-tissue images, decoding them first if it is not cached.

    Unreadable images are skipped and returned as problems (and remembered in the pack, so a cached
    pack reports them again).
    """
    records = [r for r in source.train if r.is_single_tissue]
    if not records:
        raise HisynError(f"{source.root}: no single-tissue train images (label vectors with exactly one 1)")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / "pools" / pack_key(source, records, params)
    if pack_problem(folder) is None:
        pack = PoolPack(folder)
        return pack, [Problem(**p) for p in pack.meta.get("problems", [])]
    folder.parent.mkdir(parents=True, exist_ok=True)
    (cache / "locks").mkdir(exist_ok=True)
    # One builder per pack: a second process waits here, then finds the first one's pack.
    with file_lock(cache / "locks" / f"{folder.name}.lock", f"pool cache {folder}", wait=True):
        if pack_problem(folder) is None:
            pack = PoolPack(folder)
            return pack, [Problem(**p) for p in pack.meta.get("problems", [])]
        return _build_pack(source, records, params, folder, progress)


def _build_pack(source: Source, records: list[Record], params: BackgroundParams, folder: Path,
                progress: bool) -> tuple[PoolPack, list[Problem]]:
    """Decode ``records`` into a new pack at ``folder`` (replacing a damaged one); caller holds the lock."""
    from hisyngen.progress import progress_bar as tqdm  # a bar on a terminal, log lines elsewhere

    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        entries, problems, offset = [], [], 0
        with open(tmp / "pixels.u8", "wb") as pixels, open(tmp / "background.u8", "wb") as background:
            for record in tqdm(records, desc="decoding single-tissue pool", unit="img", disable=not progress):
                try:
                    image = read_rgb(record.path)
                except ImageReadError as exc:
                    problems.append(Problem("unreadable", str(record.path), exc.reason))
                    continue
                bg = background_mask(image, params)
                pixels.write(image.tobytes())
                background.write(bg.astype(np.uint8).tobytes())
                h, w = bg.shape
                entries.append(PoolEntry(record.id, record.tissue, offset, h, w, round(float(bg.mean()), 6)).__dict__)
                offset += h * w
            if offset == 0:  # numpy cannot map an empty file
                pixels.write(b"\0" * 3)
                background.write(b"\0")
        if not entries:
            raise HisynError(f"{source.root}: none of the {len(records)} single-tissue images could be read")
        meta = {
            "version": PACK_VERSION,
            "source": str(source.root),
            "spec": source.spec.name,
            "num_classes": source.spec.num_classes,
            "background": {"threshold": params.threshold, "min_size": params.min_size},
            "entries": entries,
            "problems": [p.__dict__ for p in problems],
            "files": {name: {"size": (tmp / name).stat().st_size, "digest": file_digest(tmp / name)} for name in PACK_FILES},
        }
        atomic_write_text(tmp / "index.json", json.dumps(meta))
        if folder.exists():  # a damaged pack: out of the way first (a reader's open maps stay valid)
            trash = Path(tempfile.mkdtemp(prefix=".damaged-", dir=folder.parent))
            os.replace(folder, trash / "pack")
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PoolPack(folder), problems

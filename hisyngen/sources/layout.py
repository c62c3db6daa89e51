"""Reading a source dataset folder into records: layout detection, labels, val/test pairs.

Supported layouts:

* the three benchmarks (``wsss4luad``, ``bcss-wsss``, ``luad-histoseg``): a train folder whose file
  names carry ``[labels]`` and ``val``/``test`` folders with ``img/`` and ``mask/`` pairs;
* ``folder``: single-label images in class-named subfolders or with a class-name prefix
  (``ADI-xxxx.png``, ``TUM_0001.tif``);
* ``manifest``: a CSV (``path,labels[,split][,mask]``) or JSONL file listing images and labels.

Problems that only affect one file (an unparseable name, a missing mask) are collected as
:class:`Problem` records and the file is skipped; problems that make the whole source unusable raise
:class:`~hisyngen.errors.HisynError`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from hisyngen.errors import HisynError
from hisyngen.imageio import is_image_file
from hisyngen.sources.labels import LabelParseError, labels_from_names, parse_bracket_labels, parse_label_text
from hisyngen.spec import BUILTIN_SPECS, SPLITS, DatasetSpec, default_palette, get_spec, load_spec_file

LAYOUTS = ("wsss4luad", "bcss-wsss", "luad-histoseg", "folder", "manifest")


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


def open_source(
    root: str | Path,
    dataset: str | None = None,
    spec: DatasetSpec | str | Path | None = None,
    *,
    allow_outside_root: bool = False,
) -> Source:
    """Read a source dataset.

    ``dataset`` names a built-in spec and forces that layout; ``spec`` (a :class:`DatasetSpec` or a
    YAML/JSON file) gives a custom one whose ``label_format`` picks the layout. With neither, the
    layout is detected from the folder names and the label format of the train file names.

    Manifest rows and spec folders (``split_dirs``, ``image_dir``, ``mask_dir``) must stay inside the
    source root (the manifest's folder) unless ``allow_outside_root``: a manifest from elsewhere
    should not make hisyngen read, and export, files the user did not point it at.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise HisynError(f"source {root} does not exist")
    if dataset is not None and spec is not None:
        raise HisynError("give either --dataset or --spec, not both")
    if spec is not None and not isinstance(spec, DatasetSpec):
        spec = load_spec_file(spec)
    if dataset is not None:
        spec = get_spec(dataset)

    if root.is_file():
        if root.suffix.lower() not in (".csv", ".jsonl", ".json"):
            raise HisynError(f"{root}: a file source must be a .csv or .jsonl manifest")
        return _read_manifest(root, spec, allow_outside_root)
    if spec is None:
        layout = detect_layout(root)
        if layout == "folder":
            return _read_folder(root, None)
        spec = BUILTIN_SPECS[layout]
    if spec.label_format == "folder":
        return _read_folder(root, spec)
    if spec.label_format == "manifest":
        raise HisynError(f"spec {spec.name!r} uses a manifest: pass the manifest file as the source")
    if not allow_outside_root:
        for key, names in [*((f"split_dirs.{k}", v) for k, v in spec.split_dirs.items()),
                           ("image_dir", (spec.image_dir,)), ("mask_dir", (spec.mask_dir,))]:
            for name in names:
                inside_root(root, name, f"spec {spec.name!r} {key}", False)
    return _read_benchmark(root, spec)


def detect_layout(root: Path) -> str:
    """Name of the layout under ``root``: a built-in spec name or ``folder``."""
    for name, spec in BUILTIN_SPECS.items():
        if name == "wsss4luad" and any((root / d).is_dir() for dirs in spec.split_dirs.values() for d in dirs):
            return name
    train_dir = _first_dir(root, ("training", "train"))
    if train_dir is not None:
        style = _bracket_style(train_dir)
        if style == "run":
            return "bcss-wsss"
        if style == "spaces":
            return "luad-histoseg"
        if style == "commas":
            raise HisynError(
                f"{train_dir} holds WSSS4LUAD-style names ('[1, 0, 0]') but not the '1.training' layout; "
                "pass --dataset wsss4luad after renaming, or a --spec file with split_dirs"
            )
        raise HisynError(
            f"cannot tell the dataset of {root}: no '[labels]' in the names under {train_dir.name}/; "
            "pass --dataset or --spec"
        )
    if _class_folders(root) or _prefixed_files(root):
        return "folder"
    raise HisynError(
        f"cannot tell the layout of {root}: expected a benchmark train folder "
        f"({', '.join(sorted({d for s in BUILTIN_SPECS.values() for d in s.split_dirs['train']}))}), "
        "class-named subfolders, or class-prefixed image files; pass --dataset or --spec"
    )


def _first_dir(root: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def _bracket_style(folder: Path, sample: int = 64) -> str | None:
    styles: dict[str, int] = {}
    seen = 0
    for path in sorted(folder.iterdir()):
        if not is_image_file(path) or "[" not in path.name:
            continue
        body = path.name[path.name.rfind("[") + 1 : path.name.find("]", path.name.rfind("["))]
        style = "commas" if "," in body else "spaces" if " " in body.strip() else "run"
        styles[style] = styles.get(style, 0) + 1
        seen += 1
        if seen >= sample:
            break
    return max(styles, key=styles.get) if styles else None  # type: ignore[arg-type]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def _record_id(root: Path, path: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


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


def _read_benchmark(root: Path, spec: DatasetSpec) -> Source:
    problems: list[Problem] = []
    splits: dict[str, list[Record]] = {}
    found_any = False
    for split in SPLITS:
        folder = _first_dir(root, spec.split_dirs.get(split, ()))
        if folder is None:
            aliases = "/, ".join(spec.split_dirs.get(split, ())) + "/"
            problems.append(Problem("missing-split", str(root), f"no {split} split (looked for {aliases})"))
            splits[split] = []
            continue
        found_any = True
        if split == "train":
            splits[split] = _read_labelled_train(root, folder, spec, problems)
        else:
            splits[split] = _read_pairs(root, folder, split, spec, problems)
    if not found_any:
        raise HisynError(
            f"{root} has none of the {spec.name} split folders "
            f"({', '.join(d for dirs in spec.split_dirs.values() for d in dirs)})"
        )
    return Source(root=root, spec=spec, layout=spec.name if spec.name in BUILTIN_SPECS else "custom",
                  splits=splits, problems=problems)


def _read_labelled_train(root: Path, folder: Path, spec: DatasetSpec, problems: list[Problem]) -> list[Record]:
    records = []
    for path in _images_in(folder):
        try:
            labels = parse_bracket_labels(path.stem, spec.num_classes)
        except LabelParseError as exc:
            problems.append(Problem("unparseable-name", str(path), str(exc)))
            continue
        if not any(labels):
            problems.append(Problem("all-zero-labels", str(path), "label vector is all zeros (no tissue)"))
            continue
        records.append(Record(id=_record_id(root, path), path=path, split="train", labels=labels))
    _report_other_files(folder, problems)
    return records


def _report_other_files(folder: Path, problems: list[Problem]) -> None:
    for path in sorted(folder.iterdir()):
        if path.is_file() and not is_image_file(path) and not path.name.startswith("."):
            problems.append(Problem("not-an-image", str(path), "not an image file (ignored)"))


def _read_pairs(root: Path, folder: Path, split: str, spec: DatasetSpec, problems: list[Problem]) -> list[Record]:
    image_dir, mask_dir = folder / spec.image_dir, folder / spec.mask_dir
    if not image_dir.is_dir() or not mask_dir.is_dir():
        missing = " and ".join(d.name + "/" for d in (image_dir, mask_dir) if not d.is_dir())
        problems.append(Problem("missing-split", str(folder), f"{split} split has no {missing} folder"))
        return []
    masks = {p.stem: p for p in _images_in(mask_dir)}
    records = []
    for path in _images_in(image_dir):
        mask = masks.pop(path.stem, None)
        if mask is None:
            problems.append(Problem("missing-mask", str(path), f"no mask named {path.stem}.* in {mask_dir}"))
            continue
        records.append(Record(id=_record_id(root, path), path=path, split=split, mask_path=mask))
    for stem, mask in sorted(masks.items()):
        problems.append(Problem("orphan-mask", str(mask), f"mask without an image in {image_dir}"))
    return records


_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9]*)[-_]")


def _class_folders(root: Path) -> list[Path]:
    return [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".") and _images_in(d)]


def _prefixed_files(root: Path) -> list[Path]:
    return [p for p in _images_in(root) if _PREFIX.match(p.name)]


def _read_folder(root: Path, spec: DatasetSpec | None) -> Source:
    """Single-label images: class-named subfolders, or class-prefixed files directly under ``root``."""
    problems: list[Problem] = []
    named: list[tuple[str, Path]] = []
    folders = _class_folders(root)
    if folders:
        for folder in folders:
            named.extend((folder.name, p) for p in _images_in(folder))
    for path in _images_in(root):
        match = _PREFIX.match(path.name)
        if match is None:
            problems.append(Problem("unparseable-name", str(path), "no class-name prefix (expected CLASS-xxx or CLASS_xxx)"))
            continue
        named.append((match.group(1), path))
    if not named:
        raise HisynError(f"{root}: no class-named subfolders or class-prefixed images found")
    if spec is None:
        classes = tuple(sorted({name for name, _ in named}))
        spec = DatasetSpec(name=f"folder:{root.name}", classes=classes, palette=tuple(default_palette(len(classes))),
                           background_index=len(classes), label_format="folder",
                           description=f"single-label classes read from {root}")
    records = []
    for name, path in named:
        try:
            labels = labels_from_names([name], spec.classes)
        except LabelParseError as exc:
            problems.append(Problem("unknown-class", str(path), str(exc)))
            continue
        records.append(Record(id=_record_id(root, path), path=path, split="train", labels=labels))
    records.sort(key=lambda r: r.id)
    empty = {s: [] for s in SPLITS if s != "train"}
    return Source(root=root, spec=spec, layout="folder", splits={"train": records, **empty}, problems=problems)


def _manifest_rows(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HisynError(f"{path}: not a UTF-8 text manifest (byte {exc.start}); save it as UTF-8 CSV or JSONL") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or "path" not in reader.fieldnames or "labels" not in reader.fieldnames:
            raise HisynError(f"{path}: a CSV manifest needs a header with 'path' and 'labels' columns")
        return [dict(row, _line=i + 2) for i, row in enumerate(reader)]
    rows = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HisynError(f"{path}:{i + 1}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or "path" not in row:
            raise HisynError(f"{path}:{i + 1}: each line must be an object with 'path' and 'labels'")
        rows.append(dict(row, _line=i + 1))
    return rows


def _split_names(value: object) -> list[str] | None:
    """Class names from a labels field, or None when it is a 0/1 vector."""
    if isinstance(value, list):
        if all(isinstance(v, (int, bool)) for v in value):
            return None
        return [str(v) for v in value]
    text = str(value).strip()
    if re.fullmatch(r"[\[\]0-9,\s]*", text):
        return None
    return [t for t in re.split(r"[;|,]", text) if t.strip()]


def _read_manifest(path: Path, spec: DatasetSpec | None, allow_outside_root: bool = False) -> Source:
    """CSV/JSONL manifest: ``path``, ``labels`` (0/1 vector or class names), optional ``split``, ``mask``."""
    rows = _manifest_rows(path)
    if not rows:
        raise HisynError(f"{path}: the manifest lists no images")
    base = path.parent
    for row in rows:  # refused before anything else is read: no row may lead out of the manifest's folder
        for key in ("path", "mask"):
            if row.get(key) not in (None, ""):
                inside_root(base, str(row[key]), f"{path}:{row['_line']} {key}", allow_outside_root)
    if spec is None:
        names = [n for row in rows if row.get("labels") not in (None, "") for n in (_split_names(row["labels"]) or [])]
        if names:
            classes = tuple(sorted({n.strip() for n in names}, key=str.lower))
        else:
            first = next((row["labels"] for row in rows if row.get("labels") not in (None, "")), None)
            if first is None:
                raise HisynError(f"{path}: no row has labels")
            try:
                length = len(first) if isinstance(first, list) else len(parse_label_text(str(first)))
            except LabelParseError as exc:  # the first labelled row decides the class count
                raise HisynError(f"{path}: cannot tell the classes from the first labels {first!r} ({exc}); "
                                 "pass --dataset or --spec") from None
            classes = tuple(f"class{i}" for i in range(length))
        spec = DatasetSpec(name=f"manifest:{path.stem}", classes=classes, palette=tuple(default_palette(len(classes))),
                           background_index=len(classes), label_format="manifest")
    problems: list[Problem] = []
    splits: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for row in rows:
        where = f"{path}:{row['_line']}"
        image = base / str(row["path"])
        split = str(row.get("split") or "train").strip().lower()
        split = {"training": "train", "validation": "val", "valid": "val", "testing": "test"}.get(split, split)
        if split not in SPLITS:
            problems.append(Problem("bad-split", where, f"unknown split {row.get('split')!r}"))
            continue
        if not image.is_file():
            problems.append(Problem("missing-file", where, f"{image} does not exist"))
            continue
        # Relative to the manifest's folder for every row, absolute or not ("../x" when allowed outside):
        # ids reach exports and card, which never carry local absolute paths.
        record_id = Path(inside_root(base, str(row["path"]), where, True)).with_suffix("").as_posix()
        mask = row.get("mask")
        if split != "train":
            if not mask:
                problems.append(Problem("missing-mask", where, f"{split} image {image.name} has no 'mask'"))
                continue
            mask_path = base / str(mask)
            if not mask_path.is_file():
                problems.append(Problem("missing-mask", where, f"mask {mask_path} does not exist"))
                continue
            splits[split].append(Record(id=record_id, path=image, split=split, mask_path=mask_path))
            continue
        value = row.get("labels")
        try:
            if value in (None, ""):
                raise LabelParseError("no labels")
            names = _split_names(value)
            if names is not None:
                labels = labels_from_names(names, spec.classes)
            elif isinstance(value, list):
                labels = tuple(int(v) for v in value)
                if len(labels) != spec.num_classes or any(v not in (0, 1) for v in labels):
                    raise LabelParseError(f"labels {value} are not {spec.num_classes} 0/1 values")
            else:
                labels = parse_label_text(str(value), spec.num_classes)
        except LabelParseError as exc:
            problems.append(Problem("unparseable-labels", where, str(exc)))
            continue
        if not any(labels):
            problems.append(Problem("all-zero-labels", where, "label vector is all zeros (no tissue)"))
            continue
        splits["train"].append(Record(id=record_id, path=image, split="train", labels=labels))
    return Source(root=path, spec=spec, layout="manifest", splits=splits, problems=problems)

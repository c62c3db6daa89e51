"""Reading a source dataset folder into records: layout detection, labels, val/test pairs.

Supported layouts:

* the three benchmarks (``wsss4luad``, ``bcss-wsss``, ``luad-histoseg``): a train folder whose file
  names carry ``[labels]`` and ``val``/``test`` folders with ``img/`` and ``mask/`` pairs;
* ``folder``: single-label images in class-named subfolders or with a class-name prefix
  (``ADI-xxxx.png``, ``TUM_0001.tif``);
* ``manifest``: a CSV (``path,labels[,split][,mask]``) or JSONL file listing images and labels
  (read by :mod:`hisyngen.sources.manifest`).

Problems that only affect one file (an unparseable name, a missing mask) are collected as
:class:`Problem` records and the file is skipped; problems that make the whole source unusable raise
:class:`~hisyngen.errors.HisynError`. The records, problems and :class:`Source` themselves are defined in
:mod:`hisyngen.sources.records`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from hisyngen.errors import HisynError
from hisyngen.imageio import is_image_file
from hisyngen.sources.labels import LabelParseError, labels_from_names, parse_bracket_labels
from hisyngen.sources.manifest import read_manifest
from hisyngen.sources.records import Problem, Record, Source, inside_root
from hisyngen.spec import BUILTIN_SPECS, SPLITS, DatasetSpec, default_palette, get_spec, load_spec_file

LAYOUTS = ("wsss4luad", "bcss-wsss", "luad-histoseg", "folder", "manifest")


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
        return read_manifest(root, spec, allow_outside_root)
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

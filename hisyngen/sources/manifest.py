"""Reading a CSV (``path,labels[,split][,mask]``) or JSONL manifest source into records.

Every row is checked to stay inside the manifest's folder before anything is read
(:func:`~hisyngen.sources.records.inside_root`); a row that only affects one file becomes a
:class:`~hisyngen.sources.records.Problem` and is skipped.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from hisyngen.errors import HisynError
from hisyngen.sources.labels import LabelParseError, labels_from_names, parse_label_text
from hisyngen.sources.records import Problem, Record, Source, inside_root
from hisyngen.spec import SPLITS, DatasetSpec, default_palette


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


def read_manifest(path: Path, spec: DatasetSpec | None, allow_outside_root: bool = False) -> Source:
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

"""Dataset specifications: the one place for class names, palettes, indices and folder layouts.

A :class:`DatasetSpec` describes a weakly-labelled source dataset: its tissue classes (mask indices
``0..C-1``), the mask index of white background / excluded pixels in its ground truth, the ignore
index used in every mask hisyngen writes (255), the RGB palette, how image-level labels are encoded,
and the folder names of its splits. The three benchmarks of the HisynSeg paper are built in
(docs/method.md, Sources and single-tissue pools); custom specs load from YAML or JSON (:func:`load_spec_file`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from hisyngen.errors import HisynError

IGNORE_INDEX = 255
"""Mask value for pixels no loss or metric may count (white background, unlabelled)."""

BACKGROUND_COLOUR = (255, 255, 255)

LABEL_FORMATS = ("bracket", "folder", "manifest")
"""How image-level labels are stored: ``[..]`` in the file name, class-named folders or file-name
prefixes (single-label), or a CSV/JSONL manifest."""

LABEL_STYLES = ("commas", "digits", "spaces")
"""How a bracket label is written in a file name: ``-[1, 0, 0]``, ``+N[0101]``, ``-[1 0 0 1]``."""

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """Facts about one dataset; immutable and JSON-serialisable (:meth:`to_dict`)."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    """RGB colour per class index, then one for ``background_index``."""
    background_index: int
    ignore_index: int = IGNORE_INDEX
    label_format: str = "bracket"
    label_style: str = "spaces"
    split_dirs: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "train": ("train", "training"),
            "val": ("val", "valid", "validation"),
            "test": ("test", "testing"),
        }
    )
    """Folder-name aliases per split, tried in order."""
    image_dir: str = "img"
    mask_dir: str = "mask"
    description: str = ""

    def __post_init__(self) -> None:
        problems = _validate(self)
        if problems:
            raise HisynError(f"invalid dataset spec {self.name!r}: " + "; ".join(problems))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def colour(self, index: int) -> tuple[int, int, int]:
        """RGB colour of a mask index (tissue class or background)."""
        if index == self.background_index:
            return self.palette[-1]
        return self.palette[index]

    def mask_palette(self) -> list[int]:
        """A 768-entry flat palette for PIL "P" masks: classes, background, 255 = black."""
        return flat_palette([*enumerate(self.palette[:-1]), (self.background_index, self.palette[-1])])

    def valid_mask_values(self) -> frozenset[int]:
        """Values a ground-truth mask may hold: classes, background and ignore."""
        return frozenset(range(self.num_classes)) | {self.background_index, self.ignore_index}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "classes": list(self.classes),
            "palette": [list(c) for c in self.palette],
            "background_index": self.background_index,
            "ignore_index": self.ignore_index,
            "label_format": self.label_format,
            "label_style": self.label_style,
            "split_dirs": {k: list(v) for k, v in self.split_dirs.items()},
            "image_dir": self.image_dir,
            "mask_dir": self.mask_dir,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str = "spec") -> "DatasetSpec":
        """Build a spec from a plain mapping (a parsed YAML/JSON file or :meth:`to_dict`)."""
        if not isinstance(data, Mapping):
            raise HisynError(f"{origin}: a dataset spec must be a mapping, got {type(data).__name__}")
        known = {
            "name", "classes", "palette", "background_index", "ignore_index", "label_format", "label_style",
            "split_dirs", "image_dir", "mask_dir", "description",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise HisynError(f"{origin}: unknown spec keys {unknown}; known: {sorted(known)}")
        classes = data.get("classes")
        if not isinstance(classes, Sequence) or isinstance(classes, str) or not classes:
            raise HisynError(f"{origin}: 'classes' must be a non-empty list of names")
        classes = tuple(str(c) for c in classes)
        try:
            background_index = int(data.get("background_index", len(classes)))
            ignore_index = int(data.get("ignore_index", IGNORE_INDEX))
        except (TypeError, ValueError):
            raise HisynError(f"{origin}: background_index and ignore_index must be integers") from None
        palette = data.get("palette")
        if palette is None:
            palette = default_palette(len(classes))
        try:
            palette = [tuple(int(v) for v in c) for c in palette]
        except (TypeError, ValueError):
            raise HisynError(f"{origin}: 'palette' must be a list of [R, G, B] integer triples") from None
        if len(palette) == len(classes):
            palette.append(BACKGROUND_COLOUR)
        split_dirs = data.get("split_dirs")
        kwargs: dict[str, Any] = {}
        if split_dirs is not None:
            if not isinstance(split_dirs, Mapping) or not all(
                    isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
                    for v in split_dirs.values()):
                raise HisynError(f"{origin}: 'split_dirs' must map split names to a folder name or a list of them, "
                                 "e.g. {train: [train, training], val: [val]}")
            kwargs["split_dirs"] = {
                str(k): (v,) if isinstance(v, str) else tuple(str(x) for x in v)
                for k, v in split_dirs.items()
            }
        for key in ("image_dir", "mask_dir", "description", "label_format", "label_style"):
            if key in data:
                kwargs[key] = str(data[key])
        return cls(
            name=str(data.get("name", "custom")),
            classes=classes,
            palette=tuple(palette),  # type: ignore[arg-type]
            background_index=background_index,
            ignore_index=ignore_index,
            **kwargs,
        )


def _validate(spec: DatasetSpec) -> list[str]:
    problems = []
    c = len(spec.classes)
    if c < 1:
        problems.append("needs at least one class")
    if len(set(spec.classes)) != c:
        problems.append(f"duplicate class names in {list(spec.classes)}")
    if c >= 255:
        problems.append("at most 254 classes (255 is the ignore index)")
    if len(spec.palette) != c + 1:
        problems.append(f"palette needs {c + 1} colours (one per class, then background), got {len(spec.palette)}")
    for colour in spec.palette:
        if not is_rgb(colour):
            problems.append(f"palette colour {colour} is not an RGB triple of 0-255 integers")
            break
    if not c <= spec.background_index < IGNORE_INDEX:
        problems.append(f"background_index {spec.background_index} must be >= the class count ({c}) and < {IGNORE_INDEX}")
    if spec.ignore_index != IGNORE_INDEX:
        problems.append(f"ignore_index must be {IGNORE_INDEX}")
    if spec.label_style not in LABEL_STYLES:
        problems.append(f"label_style {spec.label_style!r} is not one of {LABEL_STYLES}")
    if spec.label_format not in LABEL_FORMATS:
        problems.append(f"label_format {spec.label_format!r} is not one of {LABEL_FORMATS}")
    return problems


def is_rgb(colour: Any) -> bool:
    """Whether ``colour`` is an RGB triple (list or tuple) of 0-255 integers."""
    return (isinstance(colour, (list, tuple)) and len(colour) == 3
            and all(isinstance(v, int) and 0 <= v <= 255 for v in colour))


def flat_palette(colours: Iterable[tuple[int, Sequence[int]]]) -> list[int]:
    """The 768-entry flat palette of a PIL "P" mask: each (mask value, RGB) given, every other
    value black (255 = ignore among them). The one palette builder: spec masks, pseudo masks."""
    flat = [0] * 768
    for index, colour in colours:
        flat[3 * index : 3 * index + 3] = [int(v) for v in colour]
    return flat


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct, deterministic colours for specs that do not give a palette (background last)."""
    import colorsys

    colours = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0  # golden-ratio steps keep neighbours apart
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    colours.append(BACKGROUND_COLOUR)
    return colours


WSSS4LUAD = DatasetSpec(
    name="wsss4luad",
    classes=("tumor", "stroma", "normal"),
    palette=((0, 64, 128), (64, 128, 0), (243, 152, 0), (255, 255, 255)),
    background_index=3,
    label_style="commas",
    split_dirs={"train": ("1.training",), "val": ("2.validation",), "test": ("3.testing",)},
    description="WSSS4LUAD lung adenocarcinoma; train names end in '-[t, s, n].png'",
)

BCSS_WSSS = DatasetSpec(
    name="bcss-wsss",
    classes=("TUM", "STR", "LYM", "NEC"),
    palette=((255, 0, 0), (0, 255, 0), (0, 0, 255), (153, 0, 255), (255, 255, 255)),
    background_index=4,
    label_style="digits",
    split_dirs={"train": ("training", "train"), "val": ("val",), "test": ("test",)},
    description="BCSS-WSSS breast cancer, 224x224; train names end in '+N[0101].png'",
)

LUAD_HISTOSEG = DatasetSpec(
    name="luad-histoseg",
    classes=("TE", "NEC", "LYM", "TAS"),
    palette=((205, 51, 51), (0, 255, 0), (65, 105, 225), (255, 165, 0), (255, 255, 255)),
    background_index=4,
    split_dirs={"train": ("train", "training"), "val": ("val",), "test": ("test",)},
    description="LUAD-HistoSeg lung adenocarcinoma, 224x224; train names end in '-[1 0 0 1].png'",
)

BUILTIN_SPECS: dict[str, DatasetSpec] = {s.name: s for s in (WSSS4LUAD, BCSS_WSSS, LUAD_HISTOSEG)}

# The paper's per-dataset numbers (the build's defaults when ``count`` / ``discriminator.epochs`` are null).
PAPER_COUNT = 3600
"""Synthetic samples kept per strategy in the paper, unless :data:`PAPER_COUNT_BY_DATASET` says otherwise."""
PAPER_COUNT_BY_DATASET = {"bcss-wsss": 7200}
PAPER_EPOCHS = 5
"""Discriminator training epochs in the paper, unless :data:`PAPER_EPOCHS_BY_RUN` says otherwise."""
PAPER_EPOCHS_BY_RUN = {("bcss-wsss", "mosaic"): 3}


def paper_count(dataset: str) -> int:
    """Kept samples per strategy in the paper: 7,200 for BCSS-WSSS, 3,600 otherwise."""
    return PAPER_COUNT_BY_DATASET.get(dataset, PAPER_COUNT)


def paper_epochs(dataset: str, strategy: str) -> int:
    """Discriminator epochs in the paper: 3 for BCSS-WSSS Mosaic, 5 otherwise."""
    return PAPER_EPOCHS_BY_RUN.get((dataset, strategy), PAPER_EPOCHS)


def get_spec(name: str) -> DatasetSpec:
    """A built-in spec by name (case-insensitive; ``_`` and ``-`` are interchangeable)."""
    key = name.strip().lower().replace("_", "-")
    if key not in BUILTIN_SPECS:
        raise HisynError(f"unknown dataset {name!r}; built-in: {', '.join(BUILTIN_SPECS)} (or pass --spec FILE)")
    return BUILTIN_SPECS[key]


def load_spec_file(path: str | Path) -> DatasetSpec:
    """Load a custom spec from a ``.yaml``/``.yml``/``.json`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HisynError(f"cannot read spec file {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # the parser's own message says where
        raise HisynError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}") from None
    return DatasetSpec.from_dict(data, origin=str(path))

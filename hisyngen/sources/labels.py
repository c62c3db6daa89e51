"""Image-level label parsing: one bracket parser for the three benchmark naming schemes.

``436219-7159-48057-[1, 0, 0].png`` (WSSS4LUAD), ``...MPP-0.2500+12[0101].png`` (BCSS-WSSS) and
``1031280-2300-27920-[1 0 0 1].png`` (LUAD-HistoSeg) all carry the label vector between the LAST
``[`` of the name and the next ``]``: either 0/1 values separated by commas and/or spaces, or a run
of 0/1 digits. Nothing is ever evaluated.
"""

from __future__ import annotations

import re

_SEPARATED = re.compile(r"^\s*[01](?:\s*[,\s]\s*[01])*\s*$")
_RUN = re.compile(r"^[01]+$")


class LabelParseError(ValueError):
    """A name or label field that does not hold a valid label vector."""


def parse_bracket_labels(name: str, num_classes: int | None = None) -> tuple[int, ...]:
    """The 0/1 label vector in the last ``[...]`` of a file name.

    ``num_classes`` (when given) must equal the vector length. Raises :class:`LabelParseError`.
    """
    start = name.rfind("[")
    if start < 0:
        raise LabelParseError("no '[labels]' in the name")
    end = name.find("]", start)
    if end < 0:
        raise LabelParseError("'[' without a closing ']'")
    return parse_label_text(name[start + 1 : end], num_classes)


def parse_label_text(text: str, num_classes: int | None = None) -> tuple[int, ...]:
    """A label vector written as ``1, 0, 0`` / ``1 0 0 1`` / ``0101`` / ``[1,0,1]``."""
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1].strip()
    if _RUN.match(body):
        values = tuple(int(ch) for ch in body)
    elif _SEPARATED.match(body):
        values = tuple(int(tok) for tok in re.split(r"[,\s]+", body.strip()) if tok)
    else:
        raise LabelParseError(f"label field {text!r} is not a list of 0/1 values")
    if num_classes is not None and len(values) != num_classes:
        raise LabelParseError(f"label field {text!r} has {len(values)} values, the dataset has {num_classes} classes")
    return values


def labels_from_names(names: list[str], classes: tuple[str, ...]) -> tuple[int, ...]:
    """A label vector from class names (case-insensitive); unknown names raise LabelParseError."""
    lookup = {c.lower(): i for i, c in enumerate(classes)}
    vector = [0] * len(classes)
    for name in names:
        key = name.strip().lower()
        if not key:
            continue
        if key not in lookup:
            raise LabelParseError(f"unknown class {name.strip()!r} (classes: {', '.join(classes)})")
        vector[lookup[key]] = 1
    return tuple(vector)


def format_labels(labels: tuple[int, ...]) -> str:
    """Canonical text of a label vector, e.g. ``[1,0,0,1]``."""
    return "[" + ",".join(str(v) for v in labels) + "]"


def labelled_name(stem: str, labels: tuple[int, ...], style: str, index: int = 0) -> str:
    """A train file name carrying ``labels`` the way a benchmark writes them.

    ``commas``: ``stem-[1, 0, 0].png`` (WSSS4LUAD); ``digits``: ``stem+index[0101].png``
    (BCSS-WSSS); ``spaces``: ``stem-[1 0 0 1].png`` (LUAD-HistoSeg).
    """
    if style == "commas":
        return f"{stem}-[{', '.join(map(str, labels))}].png"
    if style == "digits":
        return f"{stem}+{index}[{''.join(map(str, labels))}].png"
    if style == "spaces":
        return f"{stem}-[{' '.join(map(str, labels))}].png"
    raise ValueError(f"unknown label style {style!r}")

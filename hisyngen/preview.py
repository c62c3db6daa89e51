"""Contact sheets: synthetic images next to their mask overlays, with a legend of class colours."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hisyngen.corpus import Corpus
from hisyngen.errors import HisynError
from hisyngen.imageio import atomic_write_bytes, encode_rgb_png, read_mask, read_rgb
from hisyngen.spec import IGNORE_INDEX, DatasetSpec

IGNORE_COLOUR = (40, 40, 40)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def overlay(image: np.ndarray, mask: np.ndarray, spec: DatasetSpec, alpha: float = 0.45) -> np.ndarray:
    """``image`` tinted with the class colour of every pixel; ignored pixels are darkened."""
    lut = np.zeros((256, 3), np.float32)
    for c in range(spec.num_classes):
        lut[c] = spec.palette[c]
    lut[IGNORE_INDEX] = IGNORE_COLOUR
    colours = lut[mask]
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colours
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def legend(spec: DatasetSpec, width: int) -> np.ndarray:
    """A strip with a colour swatch and the name of every class, plus the ignore colour."""
    items = [(name, spec.palette[c]) for c, name in enumerate(spec.classes)] + [("ignore (255)", IGNORE_COLOUR)]
    row_h, x, y = 28, 10, 0
    rows: list[list[tuple[int, str, tuple[int, int, int]]]] = [[]]
    for name, colour in items:
        item_w = 26 + cv2.getTextSize(name, _FONT, 0.5, 1)[0][0] + 18
        if x + item_w > width and rows[-1]:
            rows.append([])
            x = 10
        rows[-1].append((x, name, colour))
        x += item_w
    strip = np.full((row_h * len(rows) + 8, width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        y = 6 + r * row_h
        for x0, name, colour in row:
            cv2.rectangle(strip, (x0, y), (x0 + 18, y + 18), tuple(int(v) for v in colour), -1)
            cv2.rectangle(strip, (x0, y), (x0 + 18, y + 18), (0, 0, 0), 1)
            cv2.putText(strip, name, (x0 + 26, y + 14), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def contact_sheet(corpus: Corpus, count: int = 16, columns: int = 4, tile: int = 224) -> np.ndarray:
    """An RGB sheet of ``count`` evenly spaced samples: image and mask overlay side by side."""
    if count < 1 or columns < 1:
        raise HisynError("preview needs --count >= 1 and --columns >= 1")
    rows = list(corpus.rows())
    if not rows:
        raise HisynError(f"{corpus.folder} holds no samples")
    picks = [rows[i] for i in np.unique(np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int))]
    cells = []
    for row in picks:
        image = read_rgb(corpus.image_path(row))
        mask = read_mask(corpus.mask_path(row))
        pair = np.concatenate([image, overlay(image, mask, corpus.spec)], axis=1)
        pair = cv2.resize(pair, (2 * tile, tile), interpolation=cv2.INTER_AREA) if pair.shape[0] != tile else pair
        cell = np.full((tile + 22, 2 * tile + 8, 3), 255, np.uint8)
        cell[:tile, 4 : 4 + 2 * tile] = pair
        names = "+".join(n for n, v in zip(corpus.spec.classes, row["labels"]) if v)
        score = f"  p={row['disc_score']:.2f}" if row.get("disc_score") is not None else ""
        cv2.putText(cell, f"{row['id']}  {names}{score}", (6, tile + 16), _FONT, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(cell)
    columns = min(columns, len(cells))
    blank = np.full_like(cells[0], 255)
    cells += [blank] * (-len(cells) % columns)
    grid = np.concatenate([np.concatenate(cells[i : i + columns], axis=1) for i in range(0, len(cells), columns)], axis=0)
    config = corpus.config
    title = np.full((34, grid.shape[1], 3), 255, np.uint8)
    text = f"{config.strategy} · {config.spec['name']} · seed {config.seed} · {len(rows)} samples (left: image, right: mask overlay)"
    cv2.putText(title, text.replace("·", "-"), (8, 23), _FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([title, grid, legend(corpus.spec, grid.shape[1])], axis=0)


def write_preview(corpus_dir: str | Path, out: str | Path, count: int = 16, columns: int = 4) -> Path:
    """Write the contact sheet of a corpus to ``out`` (PNG)."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise HisynError(f"--out must be a .png file, got {out}")
    sheet = contact_sheet(Corpus(corpus_dir), count=count, columns=columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, encode_rgb_png(sheet))
    return out

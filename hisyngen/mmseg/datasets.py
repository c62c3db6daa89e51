"""MMSegmentation datasets over a hisyngen MMSeg export (docs/formats.md, "MMSegmentation export").

``HisynMixedDataset`` is the training set: synthetic images with exact masks plus real weakly
labelled images. Real images have no mask; their ``seg_map_path`` is None and
``LoadAnnotationsOrIgnore`` gives them an all-255 map, unless ``real_masks='pseudo'`` (stage 2)
reads the masks ``hisyngen pseudo-label`` wrote to ``ann_dir/train_real/``. Every sample carries
``img_labels`` (C-length 0/1 vector) and ``is_synthetic``; ``PackSegInputs(meta_keys=...)`` passes
them to the decode head.

``HisynEvalDataset`` is the val/test set: ``img_dir/<split>`` + ``ann_dir/<split>`` with stock
``BaseSegDataset`` semantics (255 ignored). Both take classes and palette from the export's
``metainfo.json``. A config's ``metainfo`` (a derived config, ``--cfg-options
train_dataloader.dataset.metainfo=...``) is honoured where it can be and refused otherwise, never
dropped: it may repeat the export's classes, give another palette (one RGB per class) or add keys;
other classes are refused, since the masks' values are the export's class indices.
"""

from __future__ import annotations

import json
import logging
import os.path as osp
from pathlib import Path
from typing import Any

import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from hisyngen.errors import HisynError
from hisyngen.spec import IGNORE_INDEX, is_rgb

SUFFIX = ".png"


def read_export_metainfo(data_root: str | Path) -> dict[str, Any]:
    """``metainfo.json`` of an export, checked: ``classes``, ``palette`` (one RGB per class)."""
    root = Path(data_root)
    path = root / "metainfo.json"
    if not root.is_dir():
        raise HisynError(f"MMSeg export not found: {root} is not a directory (run `hisyngen export --format mmseg`)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HisynError(f"{root} is not a hisyngen MMSeg export: {path.name} is missing") from None
    except (OSError, ValueError) as exc:
        raise HisynError(f"{path}: cannot read ({exc})") from None
    classes = meta.get("classes")
    palette = meta.get("palette")
    if not isinstance(classes, list) or not classes:
        raise HisynError(f"{path}: 'classes' must be a non-empty list")
    if not isinstance(palette, list) or len(palette) != len(classes):
        raise HisynError(f"{path}: 'palette' must hold one RGB colour per class ({len(classes)})")
    if meta.get("ignore_index", IGNORE_INDEX) != IGNORE_INDEX:
        raise HisynError(f"{path}: ignore_index must be {IGNORE_INDEX}")
    return meta


def read_ids(path: Path) -> list[str]:
    """Ids of a split file, one per line (blank lines skipped); each must be a valid sample id."""
    from hisyngen.safety import check_sample_id

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise HisynError(f"cannot read split file {path}: {exc.strerror or exc}") from None
    # Ids are joined into img_dir/ann_dir paths (pseudo-label writes there): one file name each.
    return [check_sample_id(line.strip(), f"{path}:{n}") for n, line in enumerate(lines, 1) if line.strip()]


def read_labels_jsonl(path: Path, num_classes: int) -> dict[str, np.ndarray]:
    """``id -> labels`` (uint8 0/1 vector of length C) from ``synthetic.jsonl`` / ``real.jsonl``."""
    out: dict[str, np.ndarray] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise HisynError(f"cannot read {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            labels = np.asarray(row["labels"], dtype=np.int64)
            sample_id = str(row["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise HisynError(f"{path}:{number}: bad row ({exc})") from None
        if labels.shape != (num_classes,) or not np.isin(labels, (0, 1)).all():
            raise HisynError(f"{path}:{number}: 'labels' must be a 0/1 vector of length {num_classes}, got {row['labels']}")
        from hisyngen.safety import check_sample_id

        out[check_sample_id(sample_id, f"{path}:{number}")] = labels.astype(np.uint8)
    return out


HOLDOUT_EVERY = 20
"""Without real val masks, every 20th synthetic image (5%, at least one) is held out to validate on."""


def split_has_images(data_root: str | Path, split: str) -> bool:
    """Whether the export's ``splits/<split>.txt`` lists any image (val/test images come with masks)."""
    path = Path(data_root) / "splits" / f"{split}.txt"
    return path.is_file() and bool(read_ids(path))


def no_masks_error(data_root: str | Path, split: str) -> HisynError:
    """The one-line refusal to evaluate on a split without images (test: nothing to stand in)."""
    return HisynError(f"{data_root}: the export has no {split} images with masks (splits/{split}.txt is empty), so "
                      f"there is nothing to evaluate on; export a source with pixel masks for its {split} images")


def synthetic_holdout(data_root: str | Path) -> list[str]:
    """Synthetic ids validated on instead of trained on, when the export has no real val masks
    (weak patches without held-out images, a source with no val folder): ``[]`` when it has them.

    Both datasets call this (one home), so the held-out images are exactly the ones training skips.
    """
    root = Path(data_root)
    if split_has_images(root, "val"):
        return []
    path = root / "splits" / "train.txt"
    ids = read_ids(path) if path.is_file() else []
    if len(ids) < 2:
        raise HisynError(f"{root}: the export has no real val masks and too few synthetic images ({len(ids)}) to "
                         "hold some out for validation; train without validation: --cfg-options val_cfg=None "
                         "val_dataloader=None val_evaluator=None default_hooks.checkpoint.save_best=None")
    return ids[::HOLDOUT_EVERY]


def holdout_note(data_root: str | Path) -> str | None:
    """One line saying the run validates on held-out synthetic images (None with real val masks)."""
    held = synthetic_holdout(data_root)
    if not held:
        return None
    return (f"no real val masks in {data_root}: validating on {len(held)} held-out synthetic images (every "
            f"{HOLDOUT_EVERY}th, exact masks; left out of training), so val mIoU measures synthetic data, not real tissue")


DERIVED_METAINFO_KEYS = ("label_map", "reduce_zero_label")
"""Metainfo keys ``BaseSegDataset`` computes itself (overwriting a config's value): refused."""


class _ExportMixin:
    """Shared by both datasets: classes/palette from ``metainfo.json``, and a config's metainfo."""

    @staticmethod
    def _export_metainfo(data_root: str | None, requested: Any = None) -> dict[str, Any]:
        """The export's classes and palette, with what a config's ``metainfo`` (``requested``) asks."""
        if not data_root:
            raise HisynError("dataset needs data_root (the folder written by `hisyngen export --format mmseg`)")
        meta = read_export_metainfo(data_root)
        out: dict[str, Any] = dict(classes=tuple(meta["classes"]), palette=[list(c) for c in meta["palette"]])
        if requested is None:
            return out
        if not isinstance(requested, dict):
            raise HisynError(f"dataset metainfo must be a dict, got {type(requested).__name__}")
        source = Path(data_root) / "metainfo.json"
        classes = requested.get("classes")
        if classes is not None and (isinstance(classes, str) or list(classes) != list(out["classes"])):
            raise HisynError(f"metainfo.classes {classes!r} differ from the export's ({', '.join(out['classes'])}, "
                             f"{source}); its masks hold those class indices, so remove metainfo.classes from the config")
        for key in DERIVED_METAINFO_KEYS:
            if key in requested:
                raise HisynError(f"metainfo.{key} cannot be set for a hisyngen export (BaseSegDataset derives it; "
                                 "the export has no label map and no zero label to reduce)")
        merged = {**requested, **out}  # extra keys are kept: they reach dataset_meta (metrics, visualiser)
        palette = requested.get("palette")
        if palette is not None:  # display colours only: honoured
            colours = _rgb_colours(palette, len(out["classes"]))
            if colours is None:
                raise HisynError(f"metainfo.palette must hold one RGB colour (3 integers 0-255) per class "
                                 f"({len(out['classes'])}), got {palette!r}")
            merged["palette"] = colours
        return merged


def _rgb_colours(palette: Any, count: int) -> list[list[int]] | None:
    """``palette`` as ``count`` [r, g, b] lists of 0-255 integers, or None if it is not that."""
    if not isinstance(palette, (list, tuple)) or len(palette) != count or not all(map(is_rgb, palette)):
        return None
    return [list(c) for c in palette]


@DATASETS.register_module()
class HisynMixedDataset(_ExportMixin, BaseSegDataset):
    """Training set of an export: synthetic samples (masks) + real samples (image-level labels).

    Args:
        data_root: the export folder.
        synthetic: include ``img_dir/train`` (ids from ``splits/train.txt``, labels from
            ``synthetic.jsonl``; the labels are recomputed after augmentation by
            ``RecomputeImageLabels``).
        real: include ``img_dir/train_real`` (ids from ``splits/train_real.txt``, labels from
            ``real.jsonl``).
        real_masks: ``None``: real samples have no mask (all-255 map, stage 1); ``'pseudo'``:
            read ``ann_dir/train_real/<id>.png`` written by ``hisyngen pseudo-label`` (stage 2).
        **kwargs: passed to ``BaseSegDataset`` (pipeline, serialize_data, ...).
    """

    def __init__(self, data_root: str, synthetic: bool = True, real: bool = True,
                 real_masks: str | None = None, **kwargs: Any) -> None:
        if real_masks not in (None, "pseudo"):
            raise HisynError(f"real_masks must be None or 'pseudo', got {real_masks!r}")
        if not (synthetic or real):
            raise HisynError("HisynMixedDataset needs synthetic=True or real=True")
        self.use_synthetic = synthetic
        self.use_real = real
        self.real_masks = real_masks
        metainfo = self._export_metainfo(data_root, kwargs.pop("metainfo", None))  # classes: metainfo.json's
        kwargs.setdefault("img_suffix", SUFFIX)
        kwargs.setdefault("seg_map_suffix", SUFFIX)
        super().__init__(data_root=data_root, metainfo=metainfo, **kwargs)

    def load_data_list(self) -> list[dict]:
        root = Path(self.data_root)
        num_classes = len(self.metainfo["classes"])
        data_list: list[dict] = []
        if self.use_synthetic:
            labels = read_labels_jsonl(root / "synthetic.jsonl", num_classes)
            held = set(synthetic_holdout(root))  # validated on instead (exports without val masks)
            for sample_id in read_ids(root / "splits" / "train.txt"):
                if sample_id in held:
                    continue
                if sample_id not in labels:
                    raise HisynError(f"{root}: synthetic id {sample_id!r} of splits/train.txt has no row in synthetic.jsonl")
                data_list.append(self._info(root / "img_dir" / "train" / (sample_id + self.img_suffix),
                                            root / "ann_dir" / "train" / (sample_id + self.seg_map_suffix),
                                            labels[sample_id], True))
        if self.use_real:
            labels = read_labels_jsonl(root / "real.jsonl", num_classes)
            split = root / "splits" / "train_real.txt"
            ids = read_ids(split) if split.is_file() else list(labels)
            for sample_id in ids:
                if sample_id not in labels:
                    raise HisynError(f"{root}: real id {sample_id!r} has no row in real.jsonl")
                mask = None
                if self.real_masks == "pseudo":
                    mask = root / "ann_dir" / "train_real" / (sample_id + self.seg_map_suffix)
                    if not mask.is_file():
                        raise HisynError(f"{mask} is missing: run `hisyngen pseudo-label CONFIG CKPT --source {root}` first")
                data_list.append(self._info(root / "img_dir" / "train_real" / (sample_id + self.img_suffix),
                                            mask, labels[sample_id], False))
        if not data_list:
            raise HisynError(f"{root}: the export has no training images")
        return data_list

    def _info(self, img: Path, mask: Path | None, labels: np.ndarray, synthetic: bool) -> dict:
        return dict(img_path=str(img), seg_map_path=None if mask is None else str(mask),
                    img_labels=labels, is_synthetic=synthetic, label_map=None,
                    reduce_zero_label=False, seg_fields=[])

    def synthetic_flags(self) -> np.ndarray:
        """Boolean ``is_synthetic`` per index (the batch sampler buckets on it)."""
        return np.array([self.get_data_info(i)["is_synthetic"] for i in range(len(self))], dtype=bool)


@DATASETS.register_module()
class HisynEvalDataset(_ExportMixin, BaseSegDataset):
    """Validation/test set of an export: ``img_dir/<split>`` + ``ann_dir/<split>``, 255 ignored."""

    def __init__(self, data_root: str, split: str = "val", **kwargs: Any) -> None:
        if split not in ("val", "test"):
            raise HisynError(f"split must be 'val' or 'test', got {split!r}")
        metainfo = self._export_metainfo(data_root, kwargs.pop("metainfo", None))  # classes: metainfo.json's
        ids = Path(data_root) / "splits" / f"{split}.txt"
        if not ids.is_file():
            raise HisynError(f"{ids} is missing: the export has no {split} split")
        self.holdout: list[str] = []
        if not split_has_images(data_root, split):
            if split == "test":
                raise no_masks_error(data_root, split)
            self.holdout = synthetic_holdout(data_root)
            from mmengine.logging import print_log

            print_log(holdout_note(data_root), logger="current", level=logging.WARNING)
        kwargs.setdefault("img_suffix", SUFFIX)
        kwargs.setdefault("seg_map_suffix", SUFFIX)
        super().__init__(data_root=data_root, metainfo=metainfo, ann_file=osp.join("splits", f"{split}.txt"),
                         data_prefix=dict(img_path=f"img_dir/{split}", seg_map_path=f"ann_dir/{split}"),
                         **kwargs)

    def load_data_list(self) -> list[dict]:
        if not self.holdout:
            return super().load_data_list()
        root = Path(self.data_root)
        return [dict(img_path=str(root / "img_dir" / "train" / (i + self.img_suffix)),
                     seg_map_path=str(root / "ann_dir" / "train" / (i + self.seg_map_suffix)),
                     label_map=self.label_map, reduce_zero_label=self.reduce_zero_label, seg_fields=[])
                for i in self.holdout]

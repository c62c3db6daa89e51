"""Offline realism of synthetic corpora against real images (no ImageNet networks needed).

One fresh *judge* discriminator (ResNet-18, independent of any filter) is trained on half of the
real images against half of the union of the given corpora. On the held-out halves it gives, per
corpus:

* two-sample test accuracy: the judge's balanced accuracy between real and that corpus
  (50% = indistinguishable, 100% = always told apart);
* Frechet distance and KID between the judge's 512-d penultimate features of real and synthetic
  images (the analogue of FID/KID with a domain-trained network instead of Inception);
* per-channel colour mean and standard deviation.

Because every corpus is measured by the same judge, rows are comparable: an unfiltered and a
filtered corpus of one strategy side by side show what filtering changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hisyngen.errors import HisynError
from hisyngen.filtering.data import ImageSet, LabelledImages, real_image_paths, split_items
from hisyngen.filtering.model import REAL
from hisyngen.filtering.train import TrainConfig, fit, resolve_device


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) of two feature sets (rows = samples)."""
    import warnings

    from scipy import linalg

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # fewer samples than dimensions: singular, still comparable between rows
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
    root = np.real(root[0] if isinstance(root, tuple) else root)  # numerical noise can add tiny imaginary parts
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subsets: int = 50, subset_size: int = 100,
                              seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y/d + 1)^3, mean and std over random subsets."""
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    if m < 2:
        return float("nan"), float("nan")
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off = lambda k: (k.sum() - np.trace(k)) / (m * (m - 1))  # noqa: E731
        values.append(off(kxx) + off(kyy) - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


@torch.inference_mode()
def _features_and_probs(model, images: LabelledImages, batch_size: int, device: torch.device,
                        precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    from hisyngen.filtering.loader import _loader
    from hisyngen.precision import autocast

    model.eval().to(device)
    features, probs = [], []
    for batch, _ in _loader(images, list(range(len(images))), batch_size, 0):
        with autocast(precision, device):
            f = model.features(batch.to(device))
            logits = model.fc(f)
        features.append(f.float().cpu().numpy())
        probs.append(torch.softmax(logits.float(), dim=1)[:, REAL].cpu().numpy())
    return np.concatenate(features), np.concatenate(probs)


def _colour_stats(images: LabelledImages) -> dict[str, list[float]]:
    total = np.zeros(3)
    total_sq = np.zeros(3)
    pixels = 0
    for i in range(len(images)):
        image = images[i][0].reshape(-1, 3).astype(np.float64)
        total += image.sum(axis=0)
        total_sq += (image ** 2).sum(axis=0)
        pixels += len(image)
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - mean ** 2, 0))
    return {"mean": [round(float(v), 2) for v in mean], "std": [round(float(v), 2) for v in std]}


JUDGE_VAL_FRACTION = 0.5
"""The judge holds out half of each image set: its two-sample accuracy is measured on images it
never trained on, with as many of them as it trained on."""


def realism_report(
    corpora: list[str | Path],
    source: Any,
    real_from: str = "multi",
    max_images: int = 1000,
    config: TrainConfig | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Realism figures of each corpus against the real images of ``source`` (see module doc)."""
    from hisyngen.corpus import Corpus

    if not corpora:
        raise HisynError("realism needs at least one corpus")
    config = config or TrainConfig(val_fraction=JUDGE_VAL_FRACTION)
    real_paths = real_image_paths(source, real_from)[:max_images]
    sets = [ImageSet(label=REAL, size=config.image_size, paths=tuple(real_paths))]
    described = []
    for folder in corpora:
        corpus = Corpus(folder)
        if tuple(corpus.spec.classes) != tuple(source.spec.classes):
            raise HisynError(f"{folder} was made for classes {list(corpus.spec.classes)}, not {list(source.spec.classes)}")
        rows = list(corpus.rows())
        if len(rows) < 4:  # half of them are held out: each half needs images
            raise HisynError(f"{folder} has {len(rows)} images; a realism report needs at least 4 per corpus")
        picks = np.unique(np.linspace(0, len(rows) - 1, min(max_images, len(rows))).round().astype(int))
        sets.append(ImageSet(label=1 - REAL, size=config.image_size, paths=tuple(corpus.image_path(rows[i]) for i in picks)))
        filter_info = corpus.config.filter or {}
        described.append({"corpus": str(folder), "strategy": corpus.config.strategy, "filtered": bool(filter_info),
                          "acceptance_rate": filter_info.get("stats", {}).get("acceptance_rate")})
    if len(real_paths) < 4:
        raise HisynError(f"need at least 4 real images for a realism report, got {len(real_paths)}")

    # The judge sees real vs all corpora pooled; fit() takes one real and one synthetic set, so pool
    # the corpora's training halves into one path list (equal per-corpus sizes keep them balanced).
    train_items, val_items = split_items(sets, config.val_fraction, config.seed)
    pooled = tuple(sets[s].paths[i] for s, i in train_items if s > 0)
    real_train = tuple(sets[0].paths[i] for s, i in train_items if s == 0)
    judge_config = TrainConfig(**{**config.__dict__, "val_fraction": 0.2})
    judge, judge_report = fit(ImageSet(REAL, config.image_size, real_train), ImageSet(1 - REAL, config.image_size, pooled),
                              judge_config, progress=progress)
    device = resolve_device(config.device)
    precision = judge_report["precision"]  # the judge is measured in the precision it was trained in
    real_val = LabelledImages(sets, [(s, i) for s, i in val_items if s == 0])
    real_features, real_probs = _features_and_probs(judge, real_val, config.batch_size, device, precision)
    rows_out = []
    for k, info in enumerate(described, start=1):
        held_out = LabelledImages(sets, [(s, i) for s, i in val_items if s == k])
        features, probs = _features_and_probs(judge, held_out, config.batch_size, device, precision)
        balanced_accuracy = 0.5 * (np.mean(real_probs > 0.5) + np.mean(probs <= 0.5))
        kid, kid_std = kernel_inception_distance(real_features, features, seed=config.seed)
        rows_out.append({**info, "images": len(sets[k]), "held_out": len(held_out),
                         "c2st_accuracy": round(float(balanced_accuracy), 4),
                         "frechet_distance": round(frechet_distance(real_features, features), 4),
                         "kid": round(kid, 6), "kid_std": round(kid_std, 6),
                         "colour": _colour_stats(LabelledImages(sets, [(k, i) for i in range(len(sets[k]))]))})
    return {
        "real": {"source": str(source.root), "real_from": real_from, "images": len(real_paths),
                 "held_out": len(real_val), "colour": _colour_stats(LabelledImages(sets, [(0, i) for i in range(len(sets[0]))]))},
        "corpora": rows_out,
        "judge": {"split": judge_report["split"], "best_epoch": judge_report["best_epoch"],
                  "heldout": judge_report["heldout"], "seconds": judge_report["seconds"], "config": judge_report["config"],
                  "precision": precision},
    }


def render_realism(report: dict[str, Any]) -> str:
    """A markdown table of :func:`realism_report`."""
    real = report["real"]
    lines = [f"real: {real['images']} images from {real['source']} ({real['real_from']}), {real['held_out']} held out; "
             f"colour mean {real['colour']['mean']} std {real['colour']['std']}",
             "",
             "| corpus | strategy | filtered (acceptance) | two-sample accuracy | Frechet distance | KID (x1e3) | colour mean | colour std |",
             "|---|---|---|---|---|---|---|---|"]
    for row in report["corpora"]:
        filtered = f"yes ({row['acceptance_rate']:.1%})" if row["filtered"] and row["acceptance_rate"] else (
            "yes" if row["filtered"] else "no")
        lines.append(f"| {Path(row['corpus']).name} | {row['strategy']} | {filtered} | {row['c2st_accuracy']:.1%} "
                     f"| {row['frechet_distance']:.2f} | {1e3 * row['kid']:.2f} ± {1e3 * row['kid_std']:.2f} "
                     f"| {row['colour']['mean']} | {row['colour']['std']} |")
    judge = report["judge"]
    lines += ["", f"judge: ResNet-18 trained {judge['config']['epochs']} epochs on {judge['split']['train']} "
                  f"({judge.get('precision', 'fp32')}), "
                  f"held-out accuracy {judge['heldout']['accuracy']:.1%}; two-sample accuracy 50% = indistinguishable"]
    if min([real["held_out"]] + [r["held_out"] for r in report["corpora"]]) < 512:
        lines.append("note: fewer than 512 held-out images per set: Frechet distance and KID are biased upwards; "
                     "compare rows with each other, not with published FID values")
    return "\n".join(lines)

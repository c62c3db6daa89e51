"""Evaluating a discriminator: its p_real on an image set, and the held-out metrics of the paper's Table V."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hisyngen.filtering.data import LabelledImages
from hisyngen.filtering.loader import _loader
from hisyngen.filtering.model import REAL, Discriminator
from hisyngen.precision import autocast


@torch.inference_mode()
def predict(model: Discriminator, dataset: LabelledImages, batch_size: int, device: torch.device,
            num_workers: int = 0, precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """(p_real, labels) for every item of ``dataset``, in order (``precision``: a resolved one)."""
    model.eval()
    probabilities, labels = [], []
    for images, targets in _loader(dataset, list(range(len(dataset))), batch_size, num_workers):
        with autocast(precision, device):
            logits = model(images.to(device))
        probabilities.append(torch.softmax(logits.float(), dim=1)[:, REAL].cpu().numpy())
        labels.append(targets.numpy())
    return np.concatenate(probabilities), np.concatenate(labels)


def binary_metrics(p_real: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (positive = real) and ROC-AUC, as in the paper's Table V."""
    from scipy.stats import rankdata

    predicted = p_real > threshold
    real = labels == REAL
    tp, fp = int(np.sum(predicted & real)), int(np.sum(predicted & ~real))
    tn, fn = int(np.sum(~predicted & ~real)), int(np.sum(~predicted & real))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n_pos, n_neg = int(real.sum()), int((~real).sum())
    if n_pos and n_neg:
        ranks = rankdata(p_real)  # Mann-Whitney U with average ranks for ties
        auc = float((ranks[real].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    else:
        auc = float("nan")
    return {"accuracy": (tp + tn) / len(labels) if len(labels) else float("nan"), "precision": precision,
            "recall": recall, "f1": f1, "roc_auc": auc, "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn}}


def per_class_scores(p_real: np.ndarray, labels: np.ndarray, presence: np.ndarray | None) -> list[dict[str, Any]] | None:
    """Per class: mean p_real of the held-out real and synthetic images that hold it (and how many).

    A class whose real images also score low is one the discriminator has learnt as "synthetic".
    """
    if presence is None:
        return None
    out = []
    for c in range(presence.shape[1]):
        row: dict[str, Any] = {}
        for name, kind in (("real", labels == REAL), ("synthetic", labels != REAL)):
            chosen = kind & (presence[:, c] > 0)
            row[name] = round(float(p_real[chosen].mean()), 4) if chosen.any() else None
            row[f"n_{name}"] = int(chosen.sum())
        out.append(row)
    return out

"""Training real-vs-synthetic discriminators (docs/method.md#discriminator).

The batches and epoch order are in :mod:`hisyngen.filtering.loader`, held-out evaluation in
:mod:`hisyngen.filtering.evaluate`, discriminator files in :mod:`hisyngen.filtering.checkpoint`; the
names the filter, the tools and the tests import from here are re-exported.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from hisyngen.errors import HisynError
from hisyngen.filtering.checkpoint import (  # noqa: F401  (load_discriminator: re-exported)
    file_sha256, initial_weights, load_discriminator, save_discriminator,
)
from hisyngen.filtering.data import ImageSet, LabelledImages, split_items
from hisyngen.filtering.evaluate import binary_metrics, per_class_scores, predict
from hisyngen.filtering.loader import _loader, _random_flips, balanced_order
from hisyngen.filtering.model import REAL, Discriminator
from hisyngen.precision import autocast, resolve_precision


@dataclass
class TrainConfig:
    """Discriminator training settings (docs/method.md, Discriminator, says where each default comes from):
    the paper's epochs, batch size, learning rate, 80/20 split, image size and flips; hisyngen's
    ``balanced``, ``match_classes``, ``min_steps_per_epoch``, ``init_from`` and the run settings."""

    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    val_fraction: float = 0.2
    image_size: int = 224
    flips: bool = True
    balanced: bool = True
    """Draw each training epoch class-balanced when real and synthetic counts differ."""
    match_classes: bool = True
    """Weight the synthetic images so each tissue class is present in as many of them as of the real
    images: which tissues an image holds then says nothing about real vs synthetic, only how it
    looks does (False: the paper's unweighted draw)."""
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    precision: str = "auto"
    """auto, fp32, bf16 or fp16 (:mod:`hisyngen.precision`); the resolved one goes into the report."""
    min_steps_per_epoch: int = 8
    """On a small training set the batch is capped so an epoch still has this many optimiser steps
    (batch 256 over a few hundred images would train for a handful of steps and learn nothing)."""
    init_from: str | None = None
    """A local ResNet-18 checkpoint (torchvision's ImageNet ``resnet18`` weights, or a discriminator)
    to start from instead of random weights; its ``fc`` is not used (:func:`initial_weights`)."""

    def __post_init__(self) -> None:
        problems = []
        if self.min_steps_per_epoch < 1:
            problems.append(f"min_steps_per_epoch must be >= 1, got {self.min_steps_per_epoch}")
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1, got {self.batch_size}")
        if not 0 < self.val_fraction < 1:
            problems.append(f"validation fraction must be in (0, 1), got {self.val_fraction}")
        if self.lr <= 0:
            problems.append(f"learning rate must be > 0, got {self.lr}")
        if self.image_size < 32:
            problems.append(f"image size must be >= 32, got {self.image_size}")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if self.init_from is not None and not Path(self.init_from).is_file():
            problems.append(f"--init-from {self.init_from}: no such file")
        if problems:
            raise HisynError("; ".join(problems))
        # A bad --device or --precision fails now, not after the data is gathered.
        resolve_precision(self.precision, resolve_device(self.device))


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` = CUDA when available, else CPU; an explicit unavailable device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HisynError(f"--device {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HisynError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise HisynError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise HisynError(f"--device {name}: only cpu and cuda are supported")
    return device


def seeded_model(seed: int) -> Discriminator:
    """A freshly initialised discriminator; the global torch RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Discriminator()


def initial_model(config: TrainConfig) -> Discriminator:
    """The discriminator before training: seeded, then ``config.init_from``'s weights where given."""
    model = seeded_model(config.seed)
    if config.init_from is not None:
        model.load_state_dict({**model.state_dict(), **initial_weights(config.init_from)})
    return model


@torch.no_grad()
def recalibrate_batchnorm(model: Discriminator, dataset: LabelledImages, order: list[int], batch_size: int,
                          device: torch.device, num_workers: int = 0, max_images: int = 1024,
                          precision: str = "fp32") -> None:
    """Precise BN: recompute every BatchNorm's running statistics with the current weights.

    With few optimiser steps per epoch (small sets) and Adam's large early steps, the running
    averages lag far behind the weights, and evaluation-mode outputs become arbitrary (validation
    accuracy swinging between 90% and 15% from one epoch to the next). Averaging the batch
    statistics of up to ``max_images`` training images (the epoch's balanced ``order``) fixes that:
    torch's ``update_bn`` (a cumulative average over the batches, momentum restored afterwards).
    """
    from torch.optim.swa_utils import update_bn

    with autocast(precision, device):
        update_bn(_loader(dataset, order[:max_images], batch_size, num_workers, training=True), model, device)


def fit(
    real: ImageSet,
    synthetic: ImageSet,
    config: TrainConfig,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[Discriminator, dict[str, Any]]:
    """Train a discriminator, keeping the weights of the epoch with the best validation accuracy.

    Returns the model (on CPU, eval mode) and a report: split sizes, curve, held-out metrics.
    """
    from hisyngen.progress import progress_bar as tqdm  # a bar on a terminal, log lines elsewhere

    if len(real) < 2 or len(synthetic) < 2:
        raise HisynError(f"need at least 2 real and 2 synthetic images to train, got {len(real)} and {len(synthetic)}")
    if config.batch_size < 2:
        raise HisynError("the discriminator batch size must be >= 2 (BatchNorm needs two images)")
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    sets = [real, synthetic]
    train_items, val_items = split_items(sets, config.val_fraction, config.seed)
    train_set, val_set = LabelledImages(sets, train_items), LabelledImages(sets, val_items)
    train_labels = train_set.labels()
    train_presence = train_set.presence()
    weights, matching = None, None
    if config.match_classes and train_presence is not None:
        from hisyngen.filtering.data import class_matched_weights

        real_rows, synthetic_rows = train_labels == REAL, train_labels != REAL
        target = train_presence[real_rows].mean(0)
        weights = np.ones(len(train_labels))
        weights[synthetic_rows] = class_matched_weights(target, train_presence[synthetic_rows])
        matching = {"real": [round(float(v), 4) for v in target],
                    "synthetic_before": [round(float(v), 4) for v in train_presence[synthetic_rows].mean(0)],
                    "synthetic_after": [round(float(v), 4) for v in np.average(
                        train_presence[synthetic_rows], axis=0, weights=weights[synthetic_rows])]}
    batch_size = max(2, min(config.batch_size, len(train_set) // config.min_steps_per_epoch))
    model = initial_model(config).to(device).to(memory_format=torch.channels_last)
    # Master weights, optimiser state and the loss stay float32 under autocast; only fp16 needs
    # loss scaling (bf16 has float32's exponent range).
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler(enabled=precision == "fp16")
    loss_fn = nn.CrossEntropyLoss()
    flips = torch.Generator().manual_seed(config.seed)
    curve: list[dict[str, Any]] = []
    best_state, best_accuracy, best_epoch = None, -1.0, 0
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, epoch]))
        order = balanced_order(train_labels, rng, config.balanced, weights)
        model.train()
        seen, correct, loss_sum = 0, 0, 0.0
        loader = _loader(train_set, order, batch_size, config.num_workers, training=True)
        bar = tqdm(loader, desc=f"discriminator epoch {epoch}/{config.epochs}", unit="batch", disable=not progress,
                   leave=False)
        for images, labels in bar:
            if config.flips:
                images = _random_flips(images, flips)
            images, labels = images.to(device, non_blocking=True), labels.to(device)
            with autocast(precision, device):
                logits = model(images)
                loss = loss_fn(logits.float(), labels)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            seen += len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            loss_sum += float(loss.detach()) * len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        recalibrate_batchnorm(model, train_set, order, batch_size, device, config.num_workers, precision=precision)
        p_val, y_val = predict(model, val_set, config.batch_size, device, config.num_workers, precision)
        val_accuracy = float(np.mean((p_val > 0.5) == (y_val == REAL)))
        val_loss = float(-np.mean(np.log(np.clip(np.where(y_val == REAL, p_val, 1 - p_val), 1e-7, 1))))
        point = {"epoch": epoch, "train_loss": round(loss_sum / seen, 5), "train_accuracy": round(correct / seen, 5),
                 "val_loss": round(val_loss, 5), "val_accuracy": round(val_accuracy, 5),
                 "seconds": round(time.perf_counter() - epoch_start, 2)}
        curve.append(point)
        if on_epoch:
            on_epoch(point)
        if val_accuracy > best_accuracy:  # first best epoch wins ties
            best_accuracy, best_epoch = val_accuracy, epoch
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
    model.load_state_dict(best_state)  # type: ignore[arg-type]
    p_val, y_val = predict(model, val_set, config.batch_size, device, config.num_workers, precision)
    model = model.cpu().eval()
    counts = lambda items: {"real": sum(1 for s, _ in items if s == 0), "synthetic": sum(1 for s, _ in items if s == 1)}  # noqa: E731
    report = {
        "split": {"train": counts(train_items), "val": counts(val_items)},
        "config": asdict(config),
        "batch_size_used": batch_size,
        "device": str(device),
        "precision": precision,
        "curve": curve,
        "best_epoch": best_epoch,
        "heldout": binary_metrics(p_val, y_val),
        "heldout_per_class": per_class_scores(p_val, y_val, val_set.presence()),
        "class_presence": matching,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return model, report


def generated_presence(images: ImageSet, num_classes: int) -> tuple[tuple[int, ...], ...]:
    """Which classes each on-the-fly synthetic image holds (generating each once; cheap next to training)."""
    from hisyngen.filtering.data import _open_pack
    from hisyngen.synthesis import sample_rng

    pool = _open_pack(images.pack_folder)  # type: ignore[arg-type]
    out = []
    for index in range(len(images)):
        sample = images.strategy.generate(pool, sample_rng(images.seed, images.strategy.name, index, images.stream))
        out.append(tuple(int(n > 0) for n in sample.class_pixels(num_classes)[:num_classes]))
    return tuple(out)


def write_report(path: str | Path, report: dict[str, Any]) -> None:
    from hisyngen.imageio import atomic_write_text

    atomic_write_text(path, json.dumps(report, indent=2) + "\n")


def train_filter(
    source: Any,
    strategy: Any,
    out_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    negatives: int = 1000,
    negatives_from: str | Path | None = None,
    real_from: str = "multi",
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the discriminator of one strategy and write ``out_dir/model.pt`` and ``report.json``.

    Positives are real train images (``real_from``, default: two or more tissue labels); negatives
    are ``negatives`` samples generated on the fly from a separate random stream, or the images of
    the corpus ``negatives_from``. Returns the report.
    """
    from hisyngen.corpus import Corpus
    from hisyngen.filtering.data import real_images
    from hisyngen.sources.pools import build_pool_pack

    if config.init_from is not None:
        initial_weights(config.init_from)  # a wrong file fails now, not after the negatives are generated
    found = real_images(source, real_from)
    known = all(labels is not None for _, labels in found)  # a folder of patches has no labels
    real = ImageSet(label=REAL, size=config.image_size, paths=tuple(path for path, _ in found),
                    presence=tuple(tuple(labels) for _, labels in found) if known else ())
    if negatives_from is not None:
        corpus = Corpus(negatives_from)
        if corpus.config.strategy != strategy.name:
            raise HisynError(f"{negatives_from} holds {corpus.config.strategy} samples, not {strategy.name}")
        if tuple(corpus.spec.classes) != tuple(source.spec.classes):
            raise HisynError(f"{negatives_from} was made for classes {list(corpus.spec.classes)}, "
                             f"not {list(source.spec.classes)}")
        if corpus.config.filter is not None:
            raise HisynError(f"{negatives_from} is a filtered corpus; the negatives must be unfiltered samples "
                             "(the ones the discriminator will judge)")
        shaping = {k: corpus.config.params.get(k) for k in strategy.sample_params()}
        differ = [f"{k}={shaping[k]!r} there, {v!r} here" for k, v in strategy.sample_params().items() if shaping[k] != v]
        if differ:
            raise HisynError(f"{negatives_from} was made with other {strategy.name} parameters ({'; '.join(differ)}); "
                             "pass the same -p/--size options")
        rows = list(corpus.rows())[: negatives or None]
        synthetic = ImageSet(label=1 - REAL, size=config.image_size, paths=tuple(corpus.image_path(r) for r in rows),
                             presence=tuple(tuple(r["labels"]) for r in rows))
        pack_fingerprint = corpus.config.source.get("fingerprint")
    else:
        if negatives < 2:
            raise HisynError(f"--negatives must be >= 2, got {negatives}")
        pack, _ = build_pool_pack(source, cache_dir=cache_dir, progress=progress)
        strategy.check_pool(pack, source.spec.classes)
        synthetic = ImageSet(label=1 - REAL, size=config.image_size, generated=negatives, pack_folder=str(pack.folder),
                             strategy=strategy, seed=config.seed)
        synthetic = replace(synthetic, presence=generated_presence(synthetic, source.spec.num_classes))
        pack_fingerprint = None
    model, report = fit(real, synthetic, config, progress=progress)
    meta = {
        "strategy": strategy.name,
        "strategy_params": strategy.params(),
        "dataset": source.spec.name,
        "classes": list(source.spec.classes),
        "image_size": config.image_size,
        "real_from": real_from,
        "negatives": len(synthetic),
        "negatives_from": str(negatives_from) if negatives_from else None,
        "negatives_fingerprint": pack_fingerprint,
        "seed": config.seed,
        "init_from_sha256": file_sha256(config.init_from) if config.init_from else None,
        "precision": report["precision"],
        "heldout": {k: v for k, v in report["heldout"].items() if k != "confusion"},
    }
    if report["heldout_per_class"] is not None:  # by class name, for the report
        report["heldout_per_class"] = {name: row for name, row in zip(source.spec.classes, report["heldout_per_class"])}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sha = save_discriminator(out / "model.pt", model, meta)
    full = {**meta, "model": str(out / "model.pt"), "model_sha256": sha, **report}
    write_report(out / "report.json", full)
    return full

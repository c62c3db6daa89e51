"""What training and scoring feed the discriminator: batches of an image set, the epoch order, flips.

An unreadable image reaches the main process as its own one-line error, also from DataLoader workers.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from hisyngen.errors import ImageReadError
from hisyngen.filtering.data import LabelledImages


def _collate(batch: list[tuple[Any, int]]) -> tuple[torch.Tensor, torch.Tensor] | ImageReadError:
    failed = next((b[0] for b in batch if isinstance(b[0], ImageReadError)), None)
    if failed is not None:
        return failed  # raised by _Batches in the main process
    images = torch.from_numpy(np.stack([b[0] for b in batch]))
    labels = torch.tensor([b[1] for b in batch], dtype=torch.long)
    return images, labels


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)


class _CatchUnreadable:
    """The dataset, handing an unreadable image's ImageReadError back as the item instead of raising.

    A DataLoader worker's exception reaches the main process rebuilt from its formatted traceback
    (a multi-line RuntimeError for ours); returned as data, it arrives intact and one line long.
    """

    def __init__(self, dataset: LabelledImages) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int) -> tuple[Any, int]:
        try:
            return self.dataset[position]
        except ImageReadError as exc:
            return exc, -1


class _Batches:
    """Iterates a DataLoader over :class:`_CatchUnreadable`, raising the errors it hands back."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            if isinstance(batch, ImageReadError):
                raise batch
            yield batch


def _loader(dataset: LabelledImages, order: list[int], batch_size: int, num_workers: int,
            training: bool = False) -> _Batches:
    # BatchNorm cannot train on a batch of one image: drop a trailing singleton batch.
    drop_last = training and len(order) % batch_size == 1
    # Spawned, not forked, workers: a fork of a process that already runs threads (torch's, an HTTP
    # client's) can deadlock in the child; spawning costs a second or two per loader.
    return _Batches(torch.utils.data.DataLoader(
        _CatchUnreadable(dataset), batch_size=batch_size, sampler=order, num_workers=num_workers, collate_fn=_collate,
        worker_init_fn=_worker_init if num_workers else None, persistent_workers=False, drop_last=drop_last,
        multiprocessing_context="spawn" if num_workers else None))


def _random_flips(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Independent horizontal and vertical flips (p = 0.5 each) of uint8 NHWC images."""
    horizontal = torch.rand(len(images), generator=generator) < 0.5
    vertical = torch.rand(len(images), generator=generator) < 0.5
    images = images.clone()
    images[horizontal] = images[horizontal].flip(2)
    images[vertical] = images[vertical].flip(1)
    return images


def balanced_order(labels: np.ndarray, rng: np.random.Generator, balanced: bool,
                   weights: np.ndarray | None = None) -> list[int]:
    """One epoch of training positions: a permutation, or a draw of the same length, balanced
    between real and synthetic and/or following per-item ``weights``."""
    two_kinds = len(np.unique(labels)) >= 2
    if weights is None and (not balanced or not two_kinds):
        return [int(i) for i in rng.permutation(len(labels))]
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, float).copy()
    if balanced and two_kinds:
        for kind in np.unique(labels):
            w[labels == kind] /= w[labels == kind].sum()
    return [int(i) for i in rng.choice(len(labels), size=len(labels), replace=True, p=w / w.sum())]

"""A batch sampler whose every batch holds synthetic and real samples in a fixed ratio.

HisynSeg trains each step on a synthetic batch and a real batch of equal size (docs/method.md, Training: Mixed batches).
``MixedBatchSampler`` is configured as ``train_dataloader.batch_sampler``; mmengine builds it with
the dataloader's ``sampler`` (``InfiniteSampler`` or ``DefaultSampler``) and ``batch_size``.

Instead of filtering the wrapped sampler's single index stream (which needs a buffer that grows
with the imbalance between the kinds, and starves when one kind is rare), it splits the dataset's
indices by ``is_synthetic`` once and draws each kind from its own endless stream of seeded
permutations. A rare kind simply cycles faster. From the wrapped sampler it takes the seed, the
shuffle switch and the infinite/epoch mode; each stream is sliced by rank like mmengine's samplers,
so DDP ranks see disjoint samples. Same seed, same world size -> same batches.
"""

from __future__ import annotations

import itertools
from typing import Iterator, Sequence

import numpy as np
from mmengine.dataset import InfiniteSampler
from mmengine.dist import get_dist_info, sync_random_seed
from mmseg.registry import DATA_SAMPLERS
from torch.utils.data import Sampler

from hisyngen.errors import HisynError


def split_batch(batch_size: int, ratio: Sequence[float]) -> tuple[int, int]:
    """(synthetic, real) counts of a batch of ``batch_size`` for a synthetic:real ``ratio``."""
    syn_part, real_part = (float(r) for r in ratio)
    if syn_part < 0 or real_part < 0 or syn_part + real_part <= 0:
        raise HisynError(f"ratio must be two non-negative numbers, not both 0, got {tuple(ratio)}")
    n_syn = int(round(batch_size * syn_part / (syn_part + real_part)))
    n_real = batch_size - n_syn
    if syn_part > 0 and real_part > 0 and (n_syn == 0 or n_real == 0):
        raise HisynError(f"batch_size {batch_size} is too small for ratio {tuple(ratio)}: "
                         "each kind needs at least one sample per batch")
    return n_syn, n_real


def synthetic_flags(dataset: object) -> np.ndarray:
    """``is_synthetic`` of every index, from ``dataset.synthetic_flags()`` or ``get_data_info``."""
    if hasattr(dataset, "synthetic_flags"):
        return np.asarray(dataset.synthetic_flags(), dtype=bool)
    return np.array([bool(dataset.get_data_info(i)["is_synthetic"])  # type: ignore[attr-defined]
                     for i in range(len(dataset))], dtype=bool)  # type: ignore[arg-type]


@DATA_SAMPLERS.register_module()
class MixedBatchSampler(Sampler):
    """Batches of ``batch_size`` indices: ``ratio[0]`` parts synthetic, ``ratio[1]`` parts real.

    Args:
        sampler: the dataloader's sampler (mmengine passes it); its ``dataset``, ``seed`` and
            ``shuffle`` are used, and ``InfiniteSampler`` means endless batches, anything else
            epochs of :meth:`__len__` batches, reseeded by the wrapped sampler's ``epoch`` (which
            mmengine's ``DistSamplerSeedHook`` sets).
        batch_size: samples per batch on this process (synthetic + real).
        ratio: synthetic:real proportion, default 1:1. ``(1, 0)`` trains on synthetic only.
        drop_last: kept for mmengine compatibility; batches are always full.
    """

    def __init__(self, sampler: Sampler, batch_size: int, ratio: Sequence[float] = (1, 1),
                 drop_last: bool = True) -> None:
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.num_synthetic, self.num_real = split_batch(self.batch_size, ratio)
        dataset = getattr(sampler, "dataset", None)
        if dataset is None:
            raise HisynError("MixedBatchSampler needs a sampler with a .dataset (mmengine's samplers have one)")
        flags = synthetic_flags(dataset)
        self.indices = (np.flatnonzero(flags), np.flatnonzero(~flags))  # (synthetic, real)
        for count, indices, kind in zip((self.num_synthetic, self.num_real), self.indices, ("synthetic", "real")):
            if count and not len(indices):
                raise HisynError(f"the batch needs {count} {kind} samples but the dataset has none "
                                 f"(set batch_sampler ratio to train without {kind} images)")
        seed = getattr(sampler, "seed", None)
        self.seed = int(sync_random_seed() if seed is None else seed)
        self.shuffle = bool(getattr(sampler, "shuffle", True))
        self.infinite = isinstance(sampler, InfiniteSampler)
        self.rank, self.world_size = get_dist_info()

    def _stream(self, kind: int) -> Iterator[int]:
        """Endless indices of one kind for this rank: seeded permutations, sliced by rank."""
        indices = self.indices[kind]
        epoch = int(getattr(self.sampler, "epoch", 0))
        rng = np.random.default_rng([self.seed, epoch, kind])

        def cycles() -> Iterator[int]:
            while True:
                yield from (rng.permutation(indices) if self.shuffle else indices).tolist()

        return itertools.islice(cycles(), self.rank, None, self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        streams = (self._stream(0), self._stream(1))
        batches = itertools.count() if self.infinite else range(len(self))
        for _ in batches:
            yield (list(itertools.islice(streams[0], self.num_synthetic))
                   + list(itertools.islice(streams[1], self.num_real)))

    def __len__(self) -> int:
        """Batches per epoch: enough for this rank to see each synthetic sample once (real
        samples when the batch has no synthetic part)."""
        kind, per_batch = (0, self.num_synthetic) if self.num_synthetic else (1, self.num_real)
        per_rank = -(-len(self.indices[kind]) // self.world_size)
        return max(1, -(-per_rank // per_batch))


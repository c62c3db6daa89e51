"""Generate-until-N filtering: keep fresh synthetic samples the discriminator believes are real.

Candidates come from the strategy's own "filter" random stream (sample i of seed S), so they are
never a sample the discriminator was trained on, even when its negatives came from a corpus. They
are scored in fixed batches aligned to candidate indices, so the kept set depends only
on (seed, strategy, model, threshold, batch size). Generation runs ahead in worker processes while
the main process scores; each scored batch leaves a part file listing its kept rows, so an
interrupted run resumes after its last finished batch. The first N kept candidates, in index order,
form the corpus.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from hisyngen.corpus import (
    WORKER_DIED, Corpus, CorpusConfig, SampleWriter, init_worker_process, part_path, prepare_output, remove_temporaries,
    write_rows,
)
from hisyngen.errors import HisynError
from hisyngen.imageio import atomic_write_text
from hisyngen.safety import locks_output
from hisyngen.sources.inspect import skipped_warning

DEFAULT_BATCH = 64
PROBE = 2048
"""Candidates scored before a run may be judged hopeless from its acceptance rate."""


class FilterStopped(HisynError):
    """The attempt guard stopped a filter run; ``summary`` says how far it got (kept, attempted, timings)."""

    def __init__(self, message: str, summary: "FilterSummary") -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class FilterSummary:
    out: str
    strategy: str
    count: int
    kept: int
    attempted: int
    threshold: float
    seconds: float
    generation_wait_seconds: float = 0.0
    scoring_seconds: float = 0.0
    resumed_attempts: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        return self.kept / self.attempted if self.attempted else 0.0

    def to_dict(self) -> dict[str, Any]:
        scored = self.attempted - self.resumed_attempts
        return {"out": self.out, "strategy": self.strategy, "count": self.count, "kept": self.kept,
                "attempted": self.attempted, "acceptance_rate": round(self.acceptance_rate, 6),
                "threshold": self.threshold, "seconds": round(self.seconds, 2),
                "scoring_rate": round(scored / self.scoring_seconds, 2) if self.scoring_seconds else None,
                "generation_wait_seconds": round(self.generation_wait_seconds, 2),
                "problems": self.problems}


# --- candidate generation (worker side) -------------------------------------------------------

_GENERATOR: SampleWriter | None = None


def _init_generator(*args: Any) -> None:
    global _GENERATOR
    init_worker_process()
    _GENERATOR = SampleWriter(*args)


def _generate_batch(batch: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    assert _GENERATOR is not None
    return [(s.image, s.mask, row) for s, row in (_GENERATOR.generate(i) for i in range(*batch))]


class CandidateStream:
    """Batches of generated candidates in index order, produced ahead of time by worker processes
    (at most ``prefetch`` batches in flight) or in-process when ``workers`` is 0."""

    def __init__(self, writer_args: tuple, workers: int, prefetch: int) -> None:
        self.prefetch = max(1, prefetch)
        self.local = SampleWriter(*writer_args) if workers <= 0 else None
        self.pool = None
        if workers > 0:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init_generator, initargs=writer_args)
        self.pending: deque = deque()

    def batches(self, first: int, batch_size: int) -> Iterator[list[tuple[np.ndarray, np.ndarray, dict[str, Any]]]]:
        from concurrent.futures.process import BrokenProcessPool

        next_start = first
        while True:
            if self.local is not None:
                yield [(s.image, s.mask, row) for s, row in
                       (self.local.generate(i) for i in range(next_start, next_start + batch_size))]
                next_start += batch_size
                continue
            while len(self.pending) < self.prefetch:
                self.pending.append(self.pool.submit(_generate_batch, (next_start, next_start + batch_size)))
                next_start += batch_size
            try:
                yield self.pending.popleft().result()
            except BrokenProcessPool:
                raise HisynError(WORKER_DIED) from None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


# --- the loop -----------------------------------------------------------------------------------

def _finished_batches(out: Path, batch_size: int) -> tuple[int, list[dict[str, Any]]]:
    """(candidates already scored, their kept rows) from the part files of earlier runs."""
    parts = sorted((out / "parts").glob("*.jsonl"))
    attempted, rows = 0, []
    for part in parts:
        start, stop = (int(v) for v in part.stem.split("-"))
        if start != attempted or stop - start != batch_size:
            break  # parts are written in order; anything after a gap is stale
        attempted = stop
        rows.extend(json.loads(line) for line in part.read_text().splitlines() if line.strip())
    return attempted, rows


def default_max_attempts(count: int) -> int:
    """Candidates a filter may score for ``count`` kept samples unless told otherwise.

    1,000 per kept sample: a minimum acceptance rate of 0.1%. Real discriminators keep 0.3-6% of
    Mosaic/Bezier candidates on BCSS-WSSS (README), so the default lets them finish; the paper's
    WSSS4LUAD Mosaic (27 of 50,000) stops after the probe, with its rate.
    """
    return max(1000 * count, 2000)


@locks_output("out")  # the whole run: its startup cleanup must never meet another run's files
def filter_corpus(
    source: Any,
    strategy: Any,
    model_path: str | Path,
    out: str | Path,
    count: int,
    seed: int = 0,
    threshold: float = 0.5,
    max_attempts: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    workers: int = 1,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> FilterSummary:
    """Generate fresh ``strategy`` samples until ``count`` have p_real > ``threshold``.

    ``max_attempts`` (default :func:`default_max_attempts`) stops a hopeless run with an error stating
    the acceptance rate; the scored batches are kept, so rerunning with a larger limit resumes.
    """
    import torch
    from tqdm import tqdm

    from hisyngen.filtering.data import fit_size
    from hisyngen.filtering.model import REAL, fold_batchnorm
    from hisyngen.filtering.train import file_sha256, load_discriminator, resolve_device
    from hisyngen.sources.pools import build_pool_pack

    if not 0.0 < threshold < 1.0:
        raise HisynError(f"--threshold must be in (0, 1), got {threshold}")
    if seed < 0:
        raise HisynError(f"--seed must be >= 0, got {seed}")
    if count < 1:
        raise HisynError(f"--count must be >= 1, got {count}")
    if batch_size < 1:
        raise HisynError(f"--batch-size must be >= 1, got {batch_size}")
    max_attempts = max_attempts if max_attempts is not None else default_max_attempts(count)
    if max_attempts < count:
        raise HisynError(f"--max-attempts ({max_attempts}) is smaller than --count ({count})")
    started = time.perf_counter()
    model, meta = load_discriminator(model_path, strategy=strategy.name, classes=source.spec.classes,
                                     params=strategy.sample_params())
    model_file = Path(model_path) / "model.pt" if Path(model_path).is_dir() else Path(model_path)
    pack, problems = build_pool_pack(source, cache_dir=cache_dir, progress=progress)
    strategy.check_pool(pack, source.spec.classes)
    torch_device = resolve_device(device)
    # Scores on CUDA (fp16) and CPU (fp32) can differ at the threshold: the device type is part of
    # what defines the kept set, so a resume on another kind of device is refused.
    config = CorpusConfig.for_run(source, strategy, seed, count,
                                  filter={"model_sha256": file_sha256(model_file), "threshold": threshold,
                                          "batch_size": batch_size, "image_size": meta["image_size"],
                                          "device_type": torch_device.type})
    out = Path(out)
    summary = FilterSummary(out=str(out), strategy=strategy.name, count=count, kept=0, attempted=0,
                            threshold=threshold, seconds=0.0,
                            problems=[w for w in [skipped_warning([*source.problems, *problems], source.root)] if w])
    if prepare_output(out, config):
        stats = Corpus(out).config.filter.get("stats", {})  # type: ignore[union-attr]
        summary.kept, summary.attempted = count, stats.get("attempted", 0)
        summary.resumed_attempts = summary.attempted
        summary.seconds = time.perf_counter() - started
        return summary
    remove_temporaries(out)
    (out / "parts").mkdir(exist_ok=True)
    attempted, kept_rows = _finished_batches(out, batch_size)
    summary.attempted = summary.resumed_attempts = attempted

    model = fold_batchnorm(model).to(torch_device).to(memory_format=torch.channels_last)
    size = meta["image_size"]
    writer_args = (str(out), str(pack.folder), strategy.name, strategy.params(), seed, source.spec.to_dict(), "filter")
    writer = SampleWriter(*writer_args)  # writes the kept samples (main process)
    stream = CandidateStream(writer_args, workers, prefetch=2 * max(workers, 1))
    bar = tqdm(total=count, initial=min(len(kept_rows), count), desc=f"filter {strategy.name}", unit="kept",
               disable=not progress)

    def show() -> None:
        rate = len(kept_rows) / attempted if attempted else 0.0
        bar.set_postfix_str(f"attempted {attempted:,} · acceptance {rate:.1%}")

    show()
    try:
        batches = stream.batches(attempted, batch_size)
        while len(kept_rows) < count:
            rate = len(kept_rows) / attempted if attempted else 0.0
            needed = math.ceil(count / rate) if rate else math.inf
            # A minimum acceptance rate as well as a maximum: once a probe of candidates shows the
            # limit cannot be met, stop now instead of scoring up to --max-attempts in vain.
            hopeless = attempted >= min(PROBE, max_attempts) and needed > max_attempts
            if attempted >= max_attempts or hopeless:
                when = "at this rate" if attempted < max_attempts else "after --max-attempts"
                outlook = (f"so {count:,} need ~{needed:,} candidates, more than --max-attempts ({max_attempts:,})"
                           if rate else f"no candidate scored above --threshold {threshold}")
                raise FilterStopped(
                    f"stopped {when}: kept {len(kept_rows):,} of {count:,} from {attempted:,} candidates, acceptance "
                    f"rate {rate:.3%}, {outlook}; lower --threshold, train a better discriminator, ask for fewer, or "
                    "raise --max-attempts (the run resumes)",
                    summary=replace(summary, kept=len(kept_rows), attempted=attempted,
                                    seconds=time.perf_counter() - started),
                )
            wait = time.perf_counter()
            batch = next(batches)
            summary.generation_wait_seconds += time.perf_counter() - wait
            score_start = time.perf_counter()
            images = torch.from_numpy(np.stack([fit_size(image, size) for image, _, _ in batch]))
            with torch.inference_mode(), torch.autocast(torch_device.type, enabled=torch_device.type == "cuda"):
                logits = model(images.to(torch_device))
            p_real = torch.softmax(logits.float(), dim=1)[:, REAL].cpu().numpy()
            summary.scoring_seconds += time.perf_counter() - score_start
            rows = []
            for (image, mask, row), p in zip(batch, p_real):
                if float(p) > threshold:
                    row = {**row, "disc_score": float(p)}  # unrounded: a stored score is never <= the threshold
                    writer.write_sample(_Arrays(image, mask), row)
                    rows.append(row)
            write_rows(part_path(out, attempted, attempted + batch_size), rows)
            attempted += batch_size
            kept_rows.extend(rows)
            summary.attempted = attempted
            bar.update(min(len(kept_rows), count) - bar.n)
            show()
    finally:
        bar.close()
        stream.close()

    kept = kept_rows[:count]
    wanted = {f"{row['id']}.png" for row in kept}
    for kind in ("images", "masks"):  # extras of the last batch, leftovers of an interrupted batch
        for path in (out / kind).iterdir():
            if path.name not in wanted:
                path.unlink()
    last = kept[-1]["index"] + 1
    stats = {"attempted": last, "kept": count, "acceptance_rate": round(count / last, 6),
             "discriminator": {k: meta.get("heldout", {}).get(k) for k in ("accuracy", "precision", "recall", "f1", "roc_auc")},
             "min_score": min(r["disc_score"] for r in kept)}
    config.filter = {**config.filter, "stats": stats}  # type: ignore[dict-item]
    atomic_write_text(out / "corpus.json", json.dumps(config.to_dict(), indent=2) + "\n")
    tmp = out / ".manifest.jsonl.tmp"
    tmp.write_text("".join(json.dumps(row, separators=(",", ":")) + "\n" for row in kept))
    tmp.replace(out / "manifest.jsonl")
    shutil.rmtree(out / "parts", ignore_errors=True)
    summary.kept = count
    summary.attempted = last
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass
class _Arrays:
    """The two arrays SampleWriter.write_sample needs."""

    image: np.ndarray
    mask: np.ndarray

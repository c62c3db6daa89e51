"""Filtering: score fresh synthetic candidates with a discriminator, keep the most realistic ones.

Candidates come from the strategy's own "filter" random stream (sample i of seed S), so they are
never a sample the discriminator was trained on, even when its negatives came from a corpus. They
are generated ahead in worker processes (the corpus writer's pool) and scored in fixed batches
aligned to candidate indices; each scored batch leaves a part file ``OUT/scores/*.jsonl`` of
(index, stratum, p_real, class fractions), so an interrupted run resumes after its last batch.
Which candidates are kept is then a pure function of those scores (:mod:`hisyngen.filtering.select`:
per-stratum quotas, rank or threshold), and the kept ones are regenerated and written by the same
corpus writer as ``synth`` (chunks, part files, finalize). The kept set depends only on (seed,
strategy, model, selection, batch size, device type, precision), never on the worker count.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from hisyngen.corpus import (
    CandidateStream, Corpus, CorpusConfig, chunk_ranges, finalize, part_path, prepare_output, remove_temporaries,
    run_chunks, write_rows,
)
from hisyngen.errors import HisynError
from hisyngen.filtering.select import (  # DEFAULT_BATCH, default_max_attempts: re-exported, their home is select
    DEFAULT_BATCH, Selection, ThresholdTally, default_max_attempts, pixel_shares, select_rank, select_threshold, stratum, stratum_report,
)
from hisyngen.imageio import atomic_write_text
from hisyngen.safety import locks_output
from hisyngen.sources.inspect import skipped_warning

PROBE = 2048
"""Candidates scored before a threshold run may be judged hopeless from its acceptance rate."""


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
    selection: dict[str, Any]
    seconds: float
    generation_wait_seconds: float = 0.0
    scoring_seconds: float = 0.0
    resumed_attempts: int = 0
    strata: list[dict[str, Any]] = field(default_factory=list)
    class_mix: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    precision: str = "fp32"

    @property
    def acceptance_rate(self) -> float:
        return self.kept / self.attempted if self.attempted else 0.0

    def to_dict(self) -> dict[str, Any]:
        scored = self.attempted - self.resumed_attempts
        return {"out": self.out, "strategy": self.strategy, "count": self.count, "kept": self.kept,
                "attempted": self.attempted, "acceptance_rate": round(self.acceptance_rate, 6),
                "selection": self.selection, "seconds": round(self.seconds, 2),
                "scoring_rate": round(scored / self.scoring_seconds, 2) if self.scoring_seconds else None,
                "generation_wait_seconds": round(self.generation_wait_seconds, 2), "precision": self.precision,
                "strata": self.strata, "class_mix": self.class_mix, "problems": self.problems}


# --- scores on disk ---------------------------------------------------------------------------

def _score_part(out: Path, start: int, stop: int) -> Path:
    return out / "scores" / f"{start:09d}-{stop:09d}.jsonl"


def _finished_scores(out: Path, batch_size: int, limit: int | None) -> list[dict[str, Any]]:
    """Score rows of the batches earlier runs finished, in index order (contiguous from 0)."""
    rows: list[dict[str, Any]] = []
    for part in sorted((out / "scores").glob("*.jsonl")):
        start, stop = (int(v) for v in part.stem.split("-"))
        expected = start + batch_size if limit is None else min(start + batch_size, limit)
        if start != len(rows) or stop != expected:
            break  # parts are written in order; anything after a gap is stale
        rows.extend(json.loads(line) for line in part.read_text().splitlines() if line.strip())
    return rows


def _batch_ranges(first: int, batch_size: int, limit: int | None) -> Iterator[tuple[int, int]]:
    start = first
    while limit is None or start < limit:
        stop = start + batch_size if limit is None else min(start + batch_size, limit)
        yield start, stop
        start = stop


# --- the run ------------------------------------------------------------------------------------

@locks_output("out")  # the whole run: its startup cleanup must never meet another run's files
def filter_corpus(
    source: Any,
    strategy: Any,
    model_path: str | Path,
    out: str | Path,
    count: int,
    seed: int = 0,
    selection: Selection = Selection(),
    max_attempts: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    workers: int = 1,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    progress: bool = False,
    precision: str = "auto",
) -> FilterSummary:
    """Keep ``count`` fresh ``strategy`` samples chosen by the discriminator at ``model_path``.

    ``selection`` (default: rank with per-stratum quotas, 5 candidates scored per kept sample) says
    which; :meth:`Selection.paper` is the paper's rule. In threshold mode ``max_attempts`` (default
    :func:`default_max_attempts`) stops a hopeless run with an error stating the acceptance rate;
    the scored batches are kept, so rerunning with a larger limit resumes.
    """
    import torch
    from hisyngen.progress import progress_bar as tqdm  # a bar on a terminal, log lines elsewhere

    from hisyngen.filtering.data import fit_size
    from hisyngen.filtering.model import REAL, fold_batchnorm
    from hisyngen.filtering.train import file_sha256, load_discriminator, resolve_device
    from hisyngen.precision import autocast, resolve_precision
    from hisyngen.sources.pools import build_pool_pack

    if seed < 0:
        raise HisynError(f"--seed must be >= 0, got {seed}")
    if count < 1:
        raise HisynError(f"--count must be >= 1, got {count}")
    if batch_size < 1:
        raise HisynError(f"--batch-size must be >= 1, got {batch_size}")
    rank = selection.mode == "rank"
    if rank and max_attempts is not None:
        raise HisynError("--max-attempts applies to --selection threshold; rank mode scores "
                         "--oversample x count candidates (set --oversample instead)")
    max_attempts = None if rank else (max_attempts if max_attempts is not None else default_max_attempts(count))
    if max_attempts is not None and max_attempts < count:
        raise HisynError(f"--max-attempts ({max_attempts}) is smaller than --count ({count})")
    budget = selection.budget(count) if rank else None
    started = time.perf_counter()
    model, meta = load_discriminator(model_path, strategy=strategy.name, classes=source.spec.classes,
                                     params=strategy.sample_params())
    model_file = Path(model_path) / "model.pt" if Path(model_path).is_dir() else Path(model_path)
    pack, problems = build_pool_pack(source, cache_dir=cache_dir, progress=progress)
    strategy.check_pool(pack, source.spec.classes)
    torch_device = resolve_device(device)
    precision = resolve_precision(precision, torch_device)
    # Scores on CUDA and CPU, or in bf16 and fp32, can differ at the threshold: the device type and
    # the precision are part of what defines the kept set, so a resume with others is refused.
    config = CorpusConfig.for_run(source, strategy, seed, count,
                                  filter={"model_sha256": file_sha256(model_file), "selection": selection.to_dict(),
                                          "batch_size": batch_size, "image_size": meta["image_size"],
                                          "device_type": torch_device.type, "precision": precision})
    out = Path(out)
    summary = FilterSummary(out=str(out), strategy=strategy.name, count=count, kept=0, attempted=0, precision=precision,
                            selection=selection.to_dict(), seconds=0.0,
                            problems=[w for w in [skipped_warning([*source.problems, *problems], source.root)] if w])
    if prepare_output(out, config):
        stats = Corpus(out).config.filter.get("stats", {})  # type: ignore[union-attr]
        summary.kept, summary.attempted = count, stats.get("attempted", 0)
        summary.resumed_attempts = summary.attempted
        summary.strata, summary.class_mix = stats.get("strata", []), stats.get("class_mix", {})
        summary.seconds = time.perf_counter() - started
        return summary
    remove_temporaries(out)
    (out / "scores").mkdir(exist_ok=True)
    scored = _finished_scores(out, batch_size, budget)
    summary.attempted = summary.resumed_attempts = len(scored)
    tally = ThresholdTally(count, selection.threshold, selection.stratify)
    tally.add([r["s"] for r in scored], [r["p"] for r in scored])

    def finished() -> bool:
        return len(scored) >= budget if rank else tally.done()

    writer_args = (str(out), str(pack.folder), strategy.name, strategy.params(), seed, source.spec.to_dict(), "filter")
    if not finished():
        model = fold_batchnorm(model).to(torch_device).to(memory_format=torch.channels_last)
        size = meta["image_size"]
        stream = CandidateStream(writer_args, workers, prefetch=2 * max(workers, 1))
        if rank:
            bar = tqdm(total=budget, initial=len(scored), desc=f"filter {strategy.name}: score {budget:,} for {count:,}",
                       unit="img", disable=not progress)
        else:
            bar = tqdm(total=count, initial=tally.kept, desc=f"filter {strategy.name}", unit="kept", disable=not progress)
        try:
            batches = stream.batches(_batch_ranges(len(scored), batch_size, budget))
            while not finished():
                if not rank:
                    _check_outlook(tally, max_attempts, summary, started, source.spec.classes)  # type: ignore[arg-type]
                wait = time.perf_counter()
                batch = next(batches)
                summary.generation_wait_seconds += time.perf_counter() - wait
                score_start = time.perf_counter()
                images = torch.from_numpy(np.stack([fit_size(image, size) for image, _ in batch]))
                with torch.inference_mode(), autocast(precision, torch_device):
                    logits = model(images.to(torch_device))
                p_real = torch.softmax(logits.float(), dim=1)[:, REAL].cpu().numpy()
                summary.scoring_seconds += time.perf_counter() - score_start
                rows = [{"i": row["index"], "s": stratum(row["fractions"], selection.stratify), "p": float(p),
                         "f": row["fractions"]} for (_, row), p in zip(batch, p_real)]
                first, last = rows[0]["i"], rows[-1]["i"] + 1
                write_rows(_score_part(out, first, last), rows)
                scored.extend(rows)
                tally.add([r["s"] for r in rows], [r["p"] for r in rows])
                summary.attempted = len(scored)
                bar.update(len(rows) if rank else tally.kept - bar.n)
                rate = tally.kept / len(scored)
                bar.set_postfix_str(f"attempted {len(scored):,} · acceptance {rate:.1%}" if not rank else
                                    f"above {selection.threshold:g}: {sum(tally.passed.values()) / len(scored):.1%}")
        finally:
            bar.close()
            stream.close()

    strata, scores = [r["s"] for r in scored], [r["p"] for r in scored]
    if rank:
        kept = select_rank(strata, scores, count, [r["f"] for r in scored] if selection.match_area else None)
    else:
        kept = select_threshold(strata, scores, count, selection.threshold, selection.stratify)
        assert kept is not None
    # The paper's count (threshold without quotas): the candidates up to the last kept one. With
    # quotas or rank, every scored candidate counts (they all set the quotas).
    attempted = kept[-1] + 1 if not rank and not selection.stratify else len(scored)
    picks = [(scored[p]["i"], {"disc_score": scored[p]["p"], "stratum": scored[p]["s"]}) for p in kept]
    num_classes = source.spec.num_classes
    summary.strata = stratum_report(strata[:attempted], scores[:attempted], kept, count, source.spec.classes,
                                    selection.threshold)
    summary.class_mix = {
        "classes": list(source.spec.classes),
        "candidates": pixel_shares([{"fractions": r["f"]} for r in scored[:attempted]], num_classes),
        "kept": pixel_shares([{"fractions": scored[p]["f"]} for p in kept], num_classes),
    }
    # The kept samples are regenerated (deterministic per index) and written by the corpus writer.
    chunks = chunk_ranges(range(count))
    pending = [c for c in chunks if not part_path(out, *c).is_file()]
    with tqdm(total=count, initial=count - sum(b - a for a, b in pending), desc=f"write {strategy.name} -> {out.name}",
              unit="img", disable=not progress) as bar:
        run_chunks(pending, writer_args + (picks,), workers, bar.update)
    stats = {"attempted": attempted, "kept": count, "acceptance_rate": round(count / attempted, 6),
             "discriminator": {k: meta.get("heldout", {}).get(k) for k in ("accuracy", "precision", "recall", "f1", "roc_auc")},
             "min_score": min(scores[p] for p in kept), "strata": summary.strata, "class_mix": summary.class_mix}
    config.filter = {**config.filter, "stats": stats}  # type: ignore[dict-item]
    atomic_write_text(out / "corpus.json", json.dumps(config.to_dict(), indent=2) + "\n")
    finalize(out, chunks)
    shutil.rmtree(out / "scores", ignore_errors=True)
    summary.kept, summary.attempted = count, attempted
    summary.seconds = time.perf_counter() - started
    return summary


def _check_outlook(tally: ThresholdTally, max_attempts: int, summary: FilterSummary, started: float,
                   classes: tuple[str, ...]) -> None:
    """Stop a threshold run at --max-attempts, or early once a probe shows the limit cannot be met."""
    from dataclasses import replace

    from hisyngen.filtering.select import stratum_names

    attempted = tally.attempted
    needed, worst = tally.outlook()
    # A minimum acceptance rate as well as a maximum: once a probe of candidates shows the limit
    # cannot be met, stop now instead of scoring up to --max-attempts in vain.
    hopeless = attempted >= min(PROBE, max_attempts) and needed > max_attempts
    if attempted < max_attempts and not hopeless:
        return
    when = "at this rate" if attempted < max_attempts else "after --max-attempts"
    rate = tally.kept / attempted if attempted else 0.0
    where = "" if worst is None else f" (stratum {stratum_names(worst, classes)} limits it)"
    outlook = (f"so {tally.count:,} need ~{needed:,.0f} candidates{where}, more than --max-attempts ({max_attempts:,})"
               if math.isfinite(needed) else
               f"no candidate{'' if worst is None else ' of stratum ' + stratum_names(worst, classes)} scored above "
               f"--threshold {tally.threshold}")
    raise FilterStopped(
        f"stopped {when}: kept {tally.kept:,} of {tally.count:,} from {attempted:,} candidates, acceptance "
        f"rate {rate:.3%}, {outlook}; use --selection rank (a fixed budget), lower --threshold, train a better "
        "discriminator, ask for fewer, or raise --max-attempts (the run resumes)",
        summary=replace(summary, kept=tally.kept, attempted=attempted, seconds=time.perf_counter() - started),
    )

"""Synthesized corpora on disk: configuration, manifest schema, the parallel resumable writer, merge.

Layout (docs/formats.md)::

    CORPUS/corpus.json      configuration (strategy, parameters, seed, count, spec, source, shard, filter)
    CORPUS/images/<id>.png  RGB images
    CORPUS/masks/<id>.png   palette masks (0..C-1, 255 = ignore)
    CORPUS/parts/*.jsonl    manifest rows of finished chunks (while the corpus is being written)
    CORPUS/manifest.jsonl   every row, sorted by index; written last, so it marks completion

Work is split into fixed chunks of sample indices. A chunk's images and masks are written under
temporary names and renamed; its manifest part is written (atomically) only after all of them, so
a chunk is done iff its part exists and an interrupted run resumes by redoing unfinished chunks.
Sample i's generator derives from (seed, strategy, i) alone, so the bytes do not depend on the
number of workers or shards.

The format and read access are in :mod:`hisyngen.corpus_format`, the worker processes in
:mod:`hisyngen.corpus_pool`; their names are importable from here, where the rest of the package
and the Python API look for them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from hisyngen.corpus_format import Corpus, CorpusConfig, sample_row
from hisyngen.corpus_pool import CandidateStream, run_chunks  # noqa: F401  (CandidateStream: re-exported for the filter)
from hisyngen.errors import HisynError
from hisyngen.imageio import atomic_write_bytes, atomic_write_text, encode_mask_png, encode_rgb_png
from hisyngen.safety import has_marker, locks_output, user_entries, write_marker
from hisyngen.spec import DatasetSpec

CHUNK_SIZE = 64


# --- writing ----------------------------------------------------------------------------------

@dataclass
class SynthSummary:
    """What a synthesis run did."""

    out: str
    strategy: str
    count: int
    indices: list[int]
    generated: int
    resumed: int
    seconds: float
    complete: bool
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.out, "strategy": self.strategy, "count": self.count,
                "indices": [self.indices[0], self.indices[-1] + 1] if self.indices else [0, 0],
                "generated": self.generated, "resumed": self.resumed, "seconds": round(self.seconds, 2),
                "complete": self.complete, "problems": self.problems}


def prepare_output(out: Path, config: CorpusConfig) -> bool:
    """Create ``out`` for ``config`` or check it holds the same corpus. Returns True when complete."""
    config_path = out / "corpus.json"
    if config_path.is_file():
        existing = Corpus(out).config
        diffs = existing.differences(config)
        if existing.shard != config.shard:
            diffs.append(f"shard: {existing.shard} vs {config.shard}")
        if diffs:
            raise HisynError(f"{out} holds a different corpus ({'; '.join(diffs)}); choose another --out or delete it")
        if not has_marker(out, ("corpus",)):  # killed between the two files, or made by an older version
            write_marker(out, "corpus")
        complete = (out / "manifest.jsonl").is_file()
    elif out.exists() and (not out.is_dir() or user_entries(out)):
        raise HisynError(f"{out} exists and is not an empty folder or a hisyngen corpus; choose another --out")
    else:
        # The identity file comes first: a run killed right after it still resumes.
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, "corpus")  # before the identity file: a folder holding only the marker is still empty
        atomic_write_text(config_path, json.dumps(config.to_dict(), indent=2) + "\n")
        complete = False
    if not complete:
        for sub in ("images", "masks", "parts"):
            (out / sub).mkdir(exist_ok=True)
    return complete


def remove_temporaries(out: Path) -> None:
    """Drop half-written files left by an interrupted run (they never made it into a manifest)."""
    for sub in ("images", "masks", "parts"):
        folder = out / sub
        if folder.is_dir():
            for path in folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)


def chunk_ranges(indices: range, chunk_size: int = CHUNK_SIZE) -> list[tuple[int, int]]:
    """Fixed chunks aligned to multiples of ``chunk_size`` (the same for any worker count)."""
    out = []
    start = indices.start
    while start < indices.stop:
        stop = min((start // chunk_size + 1) * chunk_size, indices.stop)
        out.append((start, stop))
        start = stop
    return out


def part_path(out: Path, start: int, stop: int) -> Path:
    return out / "parts" / f"{start:09d}-{stop:09d}.jsonl"


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows))


def finalize(out: Path, chunks: list[tuple[int, int]]) -> None:
    """Concatenate the chunk parts (in index order) into manifest.jsonl and drop the parts."""
    tmp = out / ".manifest.jsonl.tmp"
    with open(tmp, "wb") as handle:
        for start, stop in chunks:
            with open(part_path(out, start, stop), "rb") as part:
                shutil.copyfileobj(part, handle)
    os.replace(tmp, out / "manifest.jsonl")
    shutil.rmtree(out / "parts", ignore_errors=True)


class SampleWriter:
    """Generates and writes chunks of one corpus; lives in each worker process (or in-process)."""

    def __init__(self, out: str, pack_folder: str, strategy_name: str, params: dict[str, Any], seed: int,
                 spec: dict[str, Any], stream: str = "corpus", picks: list[tuple[int, dict[str, Any]]] | None = None) -> None:
        """``picks``: position p of the corpus is sample ``picks[p][0]`` of ``stream``, its manifest
        row extended by ``picks[p][1]`` (a filter's kept candidates); without, position p is sample p."""
        from hisyngen.sources.pools import PoolPack
        from hisyngen.synthesis import make_strategy

        self.out = Path(out)
        self.stream = stream
        self.picks = picks
        self.pool = PoolPack(Path(pack_folder))
        self.strategy = make_strategy(strategy_name, params)
        self.seed = seed
        self.spec = DatasetSpec.from_dict(spec)
        self.palette = self.spec.mask_palette()
        self.source_ids = [e.id for e in self.pool.entries]

    def generate(self, index: int):
        from hisyngen.synthesis import sample_rng

        sample = self.strategy.generate(self.pool, sample_rng(self.seed, self.strategy.name, index, self.stream))
        row = sample_row(sample, strategy=self.strategy.name, seed=self.seed, index=index,
                         source_ids=self.source_ids, num_classes=self.spec.num_classes, stream=self.stream)
        return sample, row

    def write_sample(self, sample: Any, row: dict[str, Any]) -> None:
        atomic_write_bytes(self.out / "images" / f"{row['id']}.png", encode_rgb_png(sample.image))
        atomic_write_bytes(self.out / "masks" / f"{row['id']}.png", encode_mask_png(sample.mask, self.palette))

    def write_chunk(self, chunk: tuple[int, int]) -> int:
        """Write corpus positions ``chunk`` = [start, stop), then their manifest part."""
        rows = []
        for position in range(*chunk):
            index, extra = self.picks[position] if self.picks is not None else (position, {})
            sample, row = self.generate(index)
            row.update(extra)
            self.write_sample(sample, row)
            rows.append(row)
        write_rows(part_path(self.out, *chunk), rows)
        return len(rows)

    def candidates(self, batch: tuple[int, int]) -> list[tuple[Any, dict[str, Any]]]:
        """(image, manifest row) of samples [start, stop) of the stream, written nowhere (to be scored)."""
        return [(sample.image, row) for sample, row in (self.generate(i) for i in range(*batch))]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (0 <= i < n) -> (i, n)."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise HisynError(f"--shard must look like i/n (for example 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise HisynError(f"--shard {text}: need 0 <= i < n")
    return i, n


def small_pool_warnings(pack: Any, classes: tuple[str, ...]) -> list[str]:
    """A warning per class with some but few single-tissue sources: its synthetic tissue repeats them."""
    from hisyngen.sources.inspect import DEFAULT_MIN_POOL, small_pool_message

    return [small_pool_message(name, len(pack.by_class[c])) for c, name in enumerate(classes)
            if 0 < len(pack.by_class[c]) < DEFAULT_MIN_POOL]


@locks_output("out")
def synthesize(
    source: Any,
    strategy: Any,
    out: str | Path,
    count: int,
    seed: int = 0,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> SynthSummary:
    """Generate ``count`` samples of ``strategy`` from ``source`` into the corpus folder ``out``.

    Resumes an interrupted run with the same arguments; refuses a folder holding anything else.
    With ``shard=(i, n)`` only the i-th of n contiguous index ranges is generated (merge the shards
    with :func:`merge_corpora`).
    """
    from hisyngen.progress import progress_bar as tqdm  # a bar on a terminal, log lines elsewhere

    from hisyngen.sources.inspect import skipped_warning
    from hisyngen.sources.pools import build_pool_pack

    if count < 1:
        raise HisynError(f"--count must be >= 1, got {count}")
    if seed < 0:
        raise HisynError(f"--seed must be >= 0, got {seed}")
    out = Path(out)
    started = time.perf_counter()
    config = CorpusConfig.for_run(source, strategy, seed, count, shard=shard)
    indices = config.index_range()
    if not indices:
        raise HisynError(f"--shard {shard[0]}/{shard[1]} of {count} samples holds none; use at most {count} shards")  # type: ignore[index]
    chunks = chunk_ranges(indices)
    summary = SynthSummary(out=str(out), strategy=strategy.name, count=count, indices=list(indices[:1]) + list(indices[-1:]),
                           generated=0, resumed=0, seconds=0.0, complete=True)
    if (out / "corpus.json").is_file() and prepare_output(out, config):  # finished earlier: no pool needed
        summary.resumed = len(indices)
        summary.seconds = time.perf_counter() - started
        return summary
    pack, problems = build_pool_pack(source, cache_dir=cache_dir, progress=progress)
    skipped = skipped_warning([*source.problems, *problems], source.root)
    summary.problems = ([skipped] if skipped else []) + small_pool_warnings(pack, source.spec.classes)
    strategy.check_pool(pack, source.spec.classes)
    prepare_output(out, config)
    remove_temporaries(out)
    pending = [c for c in chunks if not part_path(out, *c).is_file()]
    summary.resumed = sum(stop - start for start, stop in chunks) - sum(stop - start for start, stop in pending)
    writer_args = (str(out), str(pack.folder), strategy.name, strategy.params(), seed, source.spec.to_dict())
    with tqdm(total=len(indices), initial=summary.resumed, desc=f"{strategy.name} -> {out.name}", unit="img",
              disable=not progress, smoothing=0.1) as bar:
        def done(n: int) -> None:
            summary.generated += n
            bar.update(n)

        run_chunks(pending, writer_args, workers, done)
    finalize(out, chunks)
    summary.seconds = time.perf_counter() - started
    return summary


@locks_output("out")
def merge_corpora(shards: list[str | Path], out: str | Path, progress: bool = False) -> dict[str, Any]:
    """Merge complete shards (``--shard i/n`` for every i) into one corpus identical to an unsharded run."""
    from hisyngen.progress import progress_bar as tqdm  # a bar on a terminal, log lines elsewhere

    if not shards:
        raise HisynError("merge needs at least one shard folder")
    corpora = [Corpus(s) for s in shards]
    for corpus in corpora:
        if corpus.config.shard is None:
            raise HisynError(f"{corpus.folder} is not a shard (it was made without --shard)")
        if not corpus.complete:
            raise HisynError(f"{corpus.folder} is an unfinished shard: rerun its synth command first")
    first = corpora[0].config
    for corpus in corpora[1:]:
        diffs = first.differences(corpus.config)
        if diffs:
            raise HisynError(f"{corpus.folder} is a shard of another corpus than {corpora[0].folder}: {'; '.join(diffs)}")
    n = first.shard["count"]  # type: ignore[index]
    by_index = {}
    for corpus in corpora:
        shard = corpus.config.shard
        if shard["count"] != n:  # type: ignore[index]
            raise HisynError(f"{corpus.folder} is shard {shard['index']}/{shard['count']} but others are out of {n}")  # type: ignore[index]
        if shard["index"] in by_index:  # type: ignore[index]
            raise HisynError(f"shard {shard['index']}/{n} given twice ({by_index[shard['index']].folder} and {corpus.folder})")  # type: ignore[index]
        by_index[shard["index"]] = corpus  # type: ignore[index]
    missing = sorted(set(range(n)) - set(by_index))
    if missing:
        raise HisynError(f"shards {', '.join(f'{i}/{n}' for i in missing)} are missing")
    merged = CorpusConfig(**{**first.__dict__, "shard": None})
    out = Path(out)
    if prepare_output(out, merged):
        return {"out": str(out), "count": merged.count, "shards": n, "copied": 0}
    remove_temporaries(out)
    copied = 0
    with tqdm(total=merged.count, desc=f"merging -> {out.name}", unit="img", disable=not progress) as bar:
        rows_out = out / ".manifest.jsonl.tmp"
        with open(rows_out, "w", encoding="utf-8") as handle:
            for i in range(n):
                corpus = by_index[i]
                for row in corpus.rows():
                    for kind, path in (("images", corpus.image_path(row)), ("masks", corpus.mask_path(row))):
                        target = out / kind / f"{row['id']}.png"  # the name the merged manifest gives it
                        if not target.is_file():
                            if not path.is_file():
                                raise HisynError(f"{path} is missing from shard {corpus.folder}; rerun its synth "
                                                 "command (it repairs nothing that is listed) or make the shard again")
                            atomic_write_bytes(target, path.read_bytes())
                            copied += 1
                    handle.write(json.dumps(row, separators=(",", ":")) + "\n")
                    bar.update(1)
        os.replace(rows_out, out / "manifest.jsonl")
    shutil.rmtree(out / "parts", ignore_errors=True)
    return {"out": str(out), "count": merged.count, "shards": n, "copied": copied}

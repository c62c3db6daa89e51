"""The on-disk format of a corpus: its identity (corpus.json), manifest rows, and read access.

Layout: :mod:`hisyngen.corpus` and docs/formats.md. The writer lives in :mod:`hisyngen.corpus`; readers
(export, filter, preview) only need :class:`Corpus`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hisyngen.errors import HisynError
from hisyngen.safety import check_sample_id
from hisyngen.spec import DatasetSpec

FORMAT = "hisyngen-corpus"
VERSION = 1


def sample_id(strategy: str, seed: int, index: int, stream: str = "corpus") -> str:
    """File stem of a sample: unique across strategies, seeds and streams, sortable by index."""
    prefix = strategy if stream == "corpus" else f"{strategy}-{stream}"
    return f"{prefix}-s{seed}-{index:06d}"


@dataclass
class CorpusConfig:
    """The identity of a corpus: two runs with equal configs produce identical files."""

    strategy: str
    params: dict[str, Any]
    seed: int
    count: int
    spec: dict[str, Any]
    source: dict[str, Any]
    """``{"root": str, "fingerprint": str}``; only the fingerprint identifies the data."""
    shard: dict[str, int] | None = None
    filter: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "strategy": self.strategy, "params": self.params,
                "seed": self.seed, "count": self.count, "spec": self.spec, "source": self.source,
                "shard": self.shard, "filter": self.filter}

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str) -> "CorpusConfig":
        if data.get("format") != FORMAT:
            raise HisynError(f"{origin} is not a hisyngen corpus configuration")
        if data.get("version") != VERSION:
            raise HisynError(f"{origin}: corpus format version {data.get('version')} is not supported (need {VERSION})")
        return cls(**{k: data.get(k) for k in ("strategy", "params", "seed", "count", "spec", "source", "shard", "filter")})

    def identity(self) -> dict[str, Any]:
        """What must match for two folders to hold (parts of) the same corpus (a filtered corpus'
        ``stats`` describe the finished run, not its identity)."""
        filter_identity = None if self.filter is None else {k: v for k, v in self.filter.items() if k != "stats"}
        return {"strategy": self.strategy, "params": self.params, "seed": self.seed, "count": self.count,
                "spec": self.spec, "fingerprint": self.source.get("fingerprint"), "filter": filter_identity}

    def differences(self, other: "CorpusConfig") -> list[str]:
        mine, theirs = self.identity(), other.identity()
        found = []
        for key in mine:
            a, b = mine[key], theirs[key]
            if a == b:
                continue
            if isinstance(a, dict) and isinstance(b, dict):  # name the entries that differ, not a cut-off dict
                found += [f"{key}.{k}: {_short(a.get(k))} vs {_short(b.get(k))}" for k in sorted({*a, *b}, key=str)
                          if a.get(k) != b.get(k)]
            else:
                found.append(f"{key}: {_short(a)} vs {_short(b)}")
        return found

    @classmethod
    def for_run(cls, source: Any, strategy: Any, seed: int, count: int, shard: tuple[int, int] | None = None,
                filter: dict[str, Any] | None = None) -> "CorpusConfig":
        """The configuration of generating ``count`` samples of ``strategy`` from ``source``."""
        singles = [r for r in source.train if r.is_single_tissue]
        return cls(strategy=strategy.name, params=strategy.params(), seed=seed, count=count,
                   spec=source.spec.to_dict(),
                   source={"root": str(Path(source.root).resolve()),
                           "fingerprint": source.fingerprint(singles, with_mtime=False)},
                   shard=None if shard is None else {"index": shard[0], "count": shard[1]}, filter=filter)

    def index_range(self) -> range:
        """The sample indices this folder is responsible for (its shard, or all)."""
        if self.shard is None:
            return range(self.count)
        i, n = self.shard["index"], self.shard["count"]
        return range(i * self.count // n, (i + 1) * self.count // n)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


class Corpus:
    """Read access to a corpus folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        config_path = self.folder / "corpus.json"
        if not config_path.is_file():
            raise HisynError(f"{self.folder} is not a hisyngen corpus (no corpus.json)")
        try:
            data = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            raise HisynError(f"{config_path}: not valid JSON ({exc.msg})") from None
        self.config = CorpusConfig.from_dict(data, str(config_path))
        self.spec = DatasetSpec.from_dict(self.config.spec, origin=str(config_path))

    @property
    def complete(self) -> bool:
        return (self.folder / "manifest.jsonl").is_file()

    def rows(self) -> Iterator[dict[str, Any]]:
        """Manifest rows in index order, streamed (a complete corpus only)."""
        if not self.complete:
            raise HisynError(f"{self.folder} is incomplete (no manifest.jsonl): rerun the command that made it to finish it")
        manifest = self.folder / "manifest.jsonl"
        with open(manifest, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    yield self._checked_row(line, f"{manifest}:{number}")

    def _checked_row(self, line: str, where: str) -> dict[str, Any]:
        """One manifest row, refused with a one-line error when it lacks what readers rely on."""
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HisynError(f"{where}: not valid JSON ({exc.msg}); the manifest is damaged") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not row["id"]:
            raise HisynError(f"{where}: a manifest row needs a sample \"id\"")
        check_sample_id(row["id"], where)  # it names images/<id>.png: never a path out of the corpus
        labels = row.get("labels")
        if (not isinstance(labels, list) or len(labels) != self.spec.num_classes
                or any(v not in (0, 1) or isinstance(v, bool) for v in labels)):
            raise HisynError(f"{where}: \"labels\" must be {self.spec.num_classes} values of 0/1 "
                             f"(one per class of {self.spec.name}), got {labels!r}")
        return row

    def __len__(self) -> int:
        with open(self.folder / "manifest.jsonl", "rb") as handle:
            return sum(1 for line in handle if line.strip())

    def image_path(self, row: dict[str, Any]) -> Path:
        return self.folder / "images" / f"{row['id']}.png"

    def mask_path(self, row: dict[str, Any]) -> Path:
        return self.folder / "masks" / f"{row['id']}.png"


def sample_row(sample: Any, *, strategy: str, seed: int, index: int, source_ids: list[str], num_classes: int,
               stream: str = "corpus") -> dict[str, Any]:
    """The manifest row of a generated sample (docs/formats.md)."""
    counts = sample.class_pixels(num_classes)
    total = float(sample.mask.size)
    return {
        "id": sample_id(strategy, seed, index, stream),
        "index": index,
        "strategy": strategy,
        "seed": seed,
        "labels": [int(c > 0) for c in counts[:num_classes]],
        "fractions": [round(int(c) / total, 6) for c in counts[:num_classes]],
        "ignore_fraction": round(int(counts[num_classes]) / total, 6),
        "sources": [source_ids[i] for i in sample.sources],
        "geometry": sample.geometry,
    }

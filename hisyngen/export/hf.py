"""Hugging Face ``datasets`` export: parquet shards with embedded PNG bytes, dataset card, label files.

Layout and features: docs/formats.md, "Hugging Face export". Two subsets (``datasets`` configs): the
default one holds image/mask pairs (synthetic train, real validation/test), ``weak`` the real train
images with image-level labels only (:data:`SUBSET_SPLITS`). Shards are written with pyarrow in row
groups of :data:`ROWS_PER_GROUP` samples, so memory does not grow with the sample count; the schema
carries the ``huggingface`` metadata of the :func:`features`, and the card's YAML repeats them, so
``datasets.load_dataset(OUT)`` recovers the ClassLabel names without guessing. The card
(:mod:`hisyngen.export.hf_card`) follows the Hub's dataset card metadata and carries no secret and no
local absolute path (:func:`hisyngen.export.provenance.publishable`).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from hisyngen.export.common import REAL, SPLITS, ExportPlan, PreparedSample
from hisyngen.spec import DatasetSpec

if TYPE_CHECKING:
    import datasets

PAIRS = "default"
"""The default subset: image/mask pairs (synthetic train, real validation/test)."""
WEAK = "weak"
"""The subset of the weakly-labelled real train images: image-level ``tissues``, no mask."""

SUBSET_SPLITS = {"train": (PAIRS, "train"), "train_real": (WEAK, "train"), "val": (PAIRS, "validation"),
                 "test": (PAIRS, "test")}
"""Export split -> (subset, Hugging Face split). Different content is a subset (``datasets`` config),
not another split: ``load_dataset(OUT)`` gives only image/mask pairs, ``load_dataset(OUT, "weak")`` the
weak images. Validation is the Hub's conventional ``validation``."""

SUBSET_FOLDERS = {PAIRS: "data", WEAK: "weak"}
"""Shard folder per subset, as ``datasets``' own ``push_to_hub`` lays out configs (``data/`` for the
default one, else the config name)."""

WEAK_COLUMNS = ("image", "tissues", "sources", "id")
"""The columns of the ``weak`` subset: those of :func:`features` that a real train image has a value for."""

ROWS_PER_GROUP = 100
"""Parquet row group size: small groups keep the Hub's viewer and random access fast for images."""

MAX_SHARD_BYTES = 500_000_000
"""A shard is closed once it holds this many bytes of images (``datasets``' own default, 500 MB)."""

DEFAULT_LICENSE = "other"


def features(classes: list[str] | tuple[str, ...], strategies: list[str]) -> "datasets.Features":
    """The columns of the default subset's splits (one schema for all, so they concatenate and share
    ClassLabels); the ``weak`` subset has :data:`WEAK_COLUMNS` of them (:func:`weak_features`)."""
    from datasets import ClassLabel, Features, Image, Sequence, Value

    return Features({
        "image": Image(),
        "label": Image(),
        "tissues": Sequence(ClassLabel(names=list(classes))),
        "strategy": ClassLabel(names=sorted(strategies) + [REAL]),
        "disc_score": Value("float32"),
        "seed": Value("int64"),
        "sources": Sequence(Value("string")),
        "id": Value("string"),
    })


def weak_features(pair_features: "datasets.Features") -> "datasets.Features":
    """The columns of the ``weak`` subset: :data:`WEAK_COLUMNS` of the pairs' features (same ClassLabels)."""
    from datasets import Features

    return Features({name: pair_features[name] for name in WEAK_COLUMNS})


class ShardWriter:
    """Streams the rows of one split into ``data/<split>-XXXXX-of-YYYYY.parquet`` shards."""

    def __init__(self, folder: Path, split: str, schema: Any, max_shard_bytes: int = MAX_SHARD_BYTES,
                 rows_per_group: int = ROWS_PER_GROUP) -> None:
        self.folder, self.split, self.schema = folder, split, schema
        self.max_shard_bytes, self.rows_per_group = max_shard_bytes, rows_per_group
        self.shards: list[Path] = []
        self.num_bytes = 0
        self._rows: list[dict[str, Any]] = []
        self._writer: Any = None
        self._shard_bytes = 0

    def write(self, row: dict[str, Any], nbytes: int) -> None:
        """Add a row whose image and mask PNGs take ``nbytes``."""
        self._rows.append(row)
        self._shard_bytes += nbytes
        self.num_bytes += nbytes
        if len(self._rows) >= self.rows_per_group or self._shard_bytes >= self.max_shard_bytes:
            self._flush()
        if self._shard_bytes >= self.max_shard_bytes:
            self._close_shard()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._rows:
            return
        if self._writer is None:
            # The final name needs the shard count: write under a provisional name, rename in close().
            path = self.folder / f"{self.split}-{len(self.shards):05d}.parquet.partial"
            self.folder.mkdir(exist_ok=True)  # a subset without rows has no folder
            # PNG bytes do not compress: store the image columns plain, compress the small ones.
            compression = {name: "snappy" for name in self.schema.names}
            for column in ("image", "label"):
                if compression.pop(column, None) is None:
                    continue  # the weak subset has no label column
                for leaf in ("bytes", "path"):
                    compression[f"{column}.{leaf}"] = "none"
            self._writer = pq.ParquetWriter(path, self.schema, compression=compression, write_page_index=True)
            self.shards.append(path)
        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema), row_group_size=len(self._rows))
        self._rows = []

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._shard_bytes = 0

    def abort(self) -> None:
        """Close the open shard file without finishing it (the export failed)."""
        self._rows = []
        self._close_shard()

    def close(self) -> list[Path]:
        """Finish the last shard and give every shard its final ``-XXXXX-of-YYYYY`` name."""
        self._flush()
        self._close_shard()
        final = []
        for i, path in enumerate(self.shards):
            target = path.with_name(f"{self.split}-{i:05d}-of-{len(self.shards):05d}.parquet")
            os.replace(path, target)
            final.append(target)
        self.shards = final
        return final


def _image_cell(data: bytes | None, sample_id: str) -> dict[str, Any] | None:
    # The path is only a name: with bytes present, `datasets` decodes the bytes.
    return None if data is None else {"bytes": data, "path": f"{sample_id}.png"}


def arrow_row(prepared: PreparedSample, num_classes: int, strategy_index: dict[str, int]) -> dict[str, Any]:
    """The parquet row of a prepared sample (ClassLabels as their integer indices)."""
    sample = prepared.sample
    return {
        "image": _image_cell(prepared.image_png, sample.id),
        "label": _image_cell(prepared.mask_png, sample.id),
        "tissues": prepared.tissues(num_classes),
        "strategy": strategy_index[sample.strategy],
        "disc_score": None if sample.disc_score is None else float(sample.disc_score),
        "seed": sample.seed,
        "sources": list(sample.sources),
        "id": sample.id,
    }


def write_hf(plan: ExportPlan, folder: Path, *, command: str | None = None, license: str = DEFAULT_LICENSE,
             tags: list[str] | None = None, max_shard_bytes: int = MAX_SHARD_BYTES,
             on_sample: Callable[[], None] = lambda: None) -> dict[str, int]:
    """Write the Hugging Face export of ``plan`` into the (empty, staged) ``folder``; counts per export split."""
    from datasets import DatasetInfo
    from datasets.info import DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo

    # Imported here: the card module imports this one's subset layout.
    from hisyngen.export.hf_card import LICENSE_FILE, dataset_card, default_tags, license_text

    pair_features = features(plan.spec.classes, plan.strategies)
    subset_features = {PAIRS: pair_features, WEAK: weak_features(pair_features)}
    strategy_index = {name: i for i, name in enumerate(pair_features["strategy"].names)}
    counts: dict[str, int] = {}
    per_strategy: dict[str, Counter] = {}
    split_infos: dict[str, SplitDict] = {}
    download_sizes: Counter = Counter()
    for split in SPLITS:
        subset, hf_split = SUBSET_SPLITS[split]
        feats = subset_features[subset]
        writer = ShardWriter(folder / SUBSET_FOLDERS[subset], hf_split, feats.arrow_schema, max_shard_bytes)
        strategies: Counter = Counter()
        try:
            for sample in plan.samples(split):
                prepared = plan.prepare(sample)
                row = arrow_row(prepared, plan.spec.num_classes, strategy_index)
                writer.write({name: row[name] for name in feats}, len(prepared.image_png) + len(prepared.mask_png or b""))
                strategies[sample.strategy] += 1
                on_sample()
        except BaseException:
            writer.abort()  # the staging folder goes away; do not leave the open file behind either
            raise
        shards = writer.close()
        counts[split] = sum(strategies.values())
        per_strategy[split] = strategies
        if shards:
            split_infos.setdefault(subset, SplitDict()).add(
                SplitInfo(name=hf_split, num_bytes=writer.num_bytes, num_examples=counts[split]))
            download_sizes[subset] += sum(p.stat().st_size for p in shards)
    infos = DatasetInfosDict({
        subset: DatasetInfo(features=subset_features[subset], splits=splits, download_size=download_sizes[subset],
                            dataset_size=sum(s.num_bytes for s in splits.values()))
        for subset, splits in split_infos.items()
    })
    card = dataset_card(plan, infos, counts, per_strategy, command=command, license=license,
                        tags=default_tags(plan) if not tags else list(tags))
    (folder / "README.md").write_text(card, encoding="utf-8")
    if license == "other":
        (folder / LICENSE_FILE).write_text(license_text(plan), encoding="utf-8")
    for name, table in label_files(plan.spec).items():
        (folder / name).write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    return counts


def label_files(spec: DatasetSpec) -> dict[str, dict[str, Any]]:
    """``id2label.json`` (index -> class, what the transformers examples read) and ``label2color.json``
    (class -> RGB of the mask palette). Classes only: 255 is ignore, not a label."""
    return {
        "id2label.json": {str(i): name for i, name in enumerate(spec.classes)},
        "label2color.json": {name: list(spec.palette[i]) for i, name in enumerate(spec.classes)},
    }

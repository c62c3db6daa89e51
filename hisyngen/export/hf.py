"""Hugging Face ``datasets`` export: parquet shards with embedded PNG bytes, dataset card, id2label.

Layout and features: docs/formats.md, "Hugging Face export". Shards are written with pyarrow in row
groups of :data:`ROWS_PER_GROUP` samples, so memory does not grow with the sample count; the schema
carries the ``huggingface`` metadata of the :func:`features`, and the card's YAML repeats them, so
``datasets.load_dataset(OUT)`` recovers the ClassLabel names without guessing.
"""

from __future__ import annotations

import json
import os
import shlex
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from hisyngen import __version__
from hisyngen.export.common import REAL, SPLITS, ExportPlan, PreparedSample
from hisyngen.safety import redact
from hisyngen.spec import IGNORE_INDEX

if TYPE_CHECKING:
    import datasets

HF_SPLIT_NAMES = {"train": "train", "train_real": "train_real", "val": "validation", "test": "test"}
"""Export split -> Hugging Face split name (the Hub's conventional ``validation``)."""

ROWS_PER_GROUP = 100
"""Parquet row group size: small groups keep the Hub's viewer and random access fast for images."""

MAX_SHARD_BYTES = 500_000_000
"""A shard is closed once it holds this many bytes of images (``datasets``' own default, 500 MB)."""

DEFAULT_LICENSE = "other"
TASK_CATEGORIES = ["image-segmentation"]
TASK_IDS = ["semantic-segmentation"]


def default_tags(plan: ExportPlan) -> list[str]:
    """Card tags when ``--tag`` is not given."""
    return ["histopathology", "segmentation"] + (["synthetic"] if plan.corpora else [])


def features(classes: list[str] | tuple[str, ...], strategies: list[str]) -> "datasets.Features":
    """The columns of every split (one schema for all, so they concatenate and share ClassLabels)."""
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
            # PNG bytes do not compress: store the image columns plain, compress the small ones.
            compression = {name: "snappy" for name in self.schema.names}
            for column in ("image", "label"):
                compression.pop(column)
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
    """Write the Hugging Face export of ``plan`` into the (empty, staged) ``folder``; counts per split."""
    from datasets import DatasetInfo
    from datasets.splits import SplitDict, SplitInfo

    feats = features(plan.spec.classes, plan.strategies)
    schema = feats.arrow_schema
    strategy_index = {name: i for i, name in enumerate(feats["strategy"].names)}
    (folder / "data").mkdir()
    counts: dict[str, int] = {}
    per_strategy: dict[str, Counter] = {}
    split_infos = SplitDict()
    download_size = 0
    for split in SPLITS:
        writer = ShardWriter(folder / "data", HF_SPLIT_NAMES[split], schema, max_shard_bytes)
        strategies: Counter = Counter()
        try:
            for sample in plan.samples(split):
                prepared = plan.prepare(sample)
                writer.write(arrow_row(prepared, plan.spec.num_classes, strategy_index),
                             len(prepared.image_png) + len(prepared.mask_png or b""))
                strategies[sample.strategy] += 1
                on_sample()
        except BaseException:
            writer.abort()  # the staging folder goes away; do not leave the open file behind either
            raise
        shards = writer.close()
        counts[split] = sum(strategies.values())
        per_strategy[split] = strategies
        if shards:
            split_infos.add(SplitInfo(name=HF_SPLIT_NAMES[split], num_bytes=writer.num_bytes, num_examples=counts[split]))
            download_size += sum(p.stat().st_size for p in shards)
    info = DatasetInfo(features=feats, splits=split_infos, download_size=download_size,
                       dataset_size=sum(s.num_bytes for s in split_infos.values()))
    card = dataset_card(plan, info, counts, per_strategy, command=command, license=license,
                        tags=default_tags(plan) if not tags else list(tags))
    (folder / "README.md").write_text(card, encoding="utf-8")
    id2label = {str(i): name for i, name in enumerate(plan.spec.classes)}
    (folder / "id2label.json").write_text(json.dumps(id2label, indent=2) + "\n", encoding="utf-8")
    return counts


# --- dataset card ------------------------------------------------------------------------------

def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket of ``n`` samples."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def card_metadata(plan: ExportPlan, info: Any, counts: dict[str, int], license: str, tags: list[str]) -> dict[str, Any]:
    """The YAML header of the dataset card."""
    from datasets.info import DatasetInfosDict

    metadata: dict[str, Any] = {
        "license": license,
        "tags": tags,
        "task_categories": TASK_CATEGORIES,
        "task_ids": TASK_IDS,
        "size_categories": [size_category(sum(counts.values()))],
        "pretty_name": f"hisyngen {plan.spec.name}",
        "configs": [{
            "config_name": "default",
            "data_files": [{"split": HF_SPLIT_NAMES[s], "path": f"data/{HF_SPLIT_NAMES[s]}-*"} for s in SPLITS if counts[s]],
        }],
    }
    # `datasets`' own YAML form of the features and split sizes, as its push_to_hub writes it.
    DatasetInfosDict({"default": info}).to_dataset_card_data(metadata)
    return metadata


def corpus_command(corpus: Any) -> str:
    """The command line that regenerates ``corpus`` from its corpus.json (parameters that differ from defaults).

    ``hisyngen synth`` for a plain corpus; ``hisyngen filter`` for a filtered one, whose discriminator
    corpus.json identifies only by its hash (the ``DISCRIMINATOR`` placeholder).
    """
    from hisyngen.synthesis import make_strategy

    config = corpus.config
    # The folder name only: a card is published, the local path of the source is nobody's business.
    source = Path(config.source["root"]).name if config.source.get("root") else "SOURCE"
    if config.filter:
        args = ["hisyngen", "filter", source, "-s", config.strategy, "-m", "DISCRIMINATOR", "-n", str(config.count),
                "--seed", str(config.seed)]
        selection = config.filter.get("selection", {})
        args += [f"--selection={selection['mode']}"] if selection else []
        for key in ("oversample", "threshold"):
            if key in selection:
                args += [f"--{key}", str(selection[key])]
        args += ["--no-stratify"] if selection.get("stratify") is False else []
        if "batch_size" in config.filter:
            args += ["--batch-size", str(config.filter["batch_size"])]
        args += ["-o", corpus.folder.name]
    else:
        args = ["hisyngen", "synth", source, "-s", config.strategy, "-n", str(config.count), "--seed", str(config.seed),
                "-o", corpus.folder.name]
    defaults = make_strategy(config.strategy).params()
    options = {"size": "--size", "background_policy": "--background-policy", "max_background": "--max-background"}
    for key, value in config.params.items():
        if value == defaults.get(key):
            continue
        if key == "allow_missing_classes":
            args.append("--allow-missing-classes")
        elif key in options:
            args += [options[key], str(value)]
        elif key == "pairs":
            pairs = ",".join(f"{corpus.spec.classes[a]}:{corpus.spec.classes[b]}" for a, b in value)
            args += ["-p", f"pairs={pairs}"]
        else:
            text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            args += ["-p", f"{key}={text}"]
    return shlex.join(args)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|")


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (``{"stats": {"kept": 6}}`` -> ``{"stats.kept": 6}``), for a flat table."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def dataset_card(plan: ExportPlan, info: Any, counts: dict[str, int], per_strategy: dict[str, Counter], *,
                 command: str | None, license: str, tags: list[str]) -> str:
    """The dataset card: YAML header (:func:`card_metadata`) and a body describing the data."""
    import yaml

    spec = plan.spec
    metadata = card_metadata(plan, info, counts, license, tags)
    lines = [
        "---", yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
        f"# hisyngen {spec.name}", "",
        f"Semantic segmentation dataset for H&E histopathology made with hisyngen {__version__} (HisynSeg) from the "
        f"weakly-labelled {spec.name} dataset: synthetic images with exact pixel masks, the real training images with "
        "their image-level tissue labels, and the real validation/test images with their ground truth.", "",
        "## Classes", "",
        "`label` is a palette PNG whose pixel values are class indices:", "",
        "| index | class | RGB |", "|---:|---|---|",
    ]
    lines += [f"| {i} | {name} | {tuple(spec.palette[i])} |" for i, name in enumerate(spec.classes)]
    lines += [
        f"| {IGNORE_INDEX} | ignore | - |", "",
        f"{IGNORE_INDEX} marks pixels no loss or metric may count: white slide background, excluded regions. "
        f"The source ground truth's background index ({spec.background_index}) is mapped to {IGNORE_INDEX}. "
        "`id2label.json` maps indices to names.", "",
        "## Splits", "",
        "| split | samples | content |", "|---|---:|---|",
    ]
    content = {"train": "synthetic images, exact masks", "train_real": "real images, image-level `tissues` only (`label` is empty)",
               "val": "real images, ground-truth masks", "test": "real images, ground-truth masks"}
    lines += [f"| {HF_SPLIT_NAMES[s]} | {counts[s]} | {content[s]} |" for s in SPLITS]
    if plan.strategies:
        lines += ["", "Synthetic samples per strategy:", "", "| strategy | samples |", "|---|---:|"]
        lines += [f"| {name} | {per_strategy['train'][name]} |" for name in plan.strategies]
    lines += [
        "", "## Columns", "",
        "- `image`: RGB PNG; `label`: palette PNG mask (see Classes), empty in `train_real`",
        "- `tissues`: classes present (synthetic: in the mask; `train_real`: the image-level labels; validation/test: in the ground truth)",
        f"- `strategy`: how the image was made ({', '.join(plan.strategies + [REAL])})",
        "- `disc_score`: discriminator realism score of a filtered corpus, else null; `seed`: the synthesis seed (null for real images)",
        "- `sources`: ids of the source images a sample was made from (a real image: its own id in the source); `id`: the sample id",
        "", "## How it was generated", "",
    ]
    if command:  # redacted here too: an API caller may pass its own command line
        lines += ["Export command:", "", "```", redact(command), "```", ""]
    lines += [f"Source: `{Path(plan.source.root).name}` ({spec.name}).", ""]
    if plan.corpora:
        lines += ["Corpora, each equivalent to:", "", "```"] + [corpus_command(c) for c in plan.corpora] + ["```", ""]
    filtered = [c for c in plan.corpora if c.config.filter]
    if filtered:
        lines += ["## Filtering", ""]
        for corpus in filtered:
            lines += [f"`{corpus.folder.name}` ({corpus.config.strategy}):", "", "| key | value |", "|---|---|"]
            stats = corpus.config.filter.get("stats", {})
            shown = {**corpus.config.filter, "stats": {k: v for k, v in stats.items() if k not in ("strata", "class_mix")}}
            lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in flatten(shown).items()]
            lines.append("")
            if stats.get("class_mix"):
                from hisyngen.filtering.select import render_class_mix

                lines += [f"Class pixel share, scored candidates -> kept: {render_class_mix(stats['class_mix'])}.", ""]
            if stats.get("strata"):
                lines += ["| stratum (dominant class (classes present)) | quota | kept | scored | acceptance | mean p_real |",
                          "|---|---:|---:|---:|---:|---:|"]
                lines += [f"| {r['classes']} | {r['quota']} | {r['kept']} | {r['scored']} | {r['acceptance']:.1%} | "
                          f"{r['mean_score']:.3f} |" for r in stats["strata"]]
                lines.append("")
    lines += [
        "## Loading", "",
        "```python",
        "import numpy as np",
        "from datasets import load_dataset",
        "",
        'ds = load_dataset("PATH_OR_REPO_ID")',
        'mask = np.array(ds["train"][0]["label"])  # class indices, 255 = ignore',
        "```", "",
    ]
    return "\n".join(lines)

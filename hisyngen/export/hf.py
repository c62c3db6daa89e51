"""Hugging Face ``datasets`` export: parquet shards with embedded PNG bytes, dataset card, label files.

Layout and features: docs/formats.md, "Hugging Face export". Two subsets (``datasets`` configs): the
default one holds image/mask pairs (synthetic train, real validation/test), ``weak`` the real train
images with image-level labels only (:data:`SUBSET_SPLITS`). Shards are written with pyarrow in row
groups of :data:`ROWS_PER_GROUP` samples, so memory does not grow with the sample count; the schema
carries the ``huggingface`` metadata of the :func:`features`, and the card's YAML repeats them, so
``datasets.load_dataset(OUT)`` recovers the ClassLabel names without guessing. The card follows the
Hub's dataset card metadata (built with ``huggingface_hub``'s ``DatasetCardData``) and carries no
secret and no local absolute path (:func:`publishable`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from hisyngen import __version__
from hisyngen.export.common import REAL, SPLITS, ExportPlan, PreparedSample, label_fields, sanitize_id
from hisyngen.safety import recorded_command, redact
from hisyngen.spec import BUILTIN_SPECS, IGNORE_INDEX, DatasetSpec

if TYPE_CHECKING:
    import datasets
    from huggingface_hub import DatasetCardData

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
TASK_CATEGORIES = ["image-segmentation"]
TASK_IDS = ["semantic-segmentation"]
REPO_PLACEHOLDER = "PATH_OR_REPO_ID"
"""Stands for the export folder or the Hub repository in the card's code (the card does not know where it
will be published)."""
LICENSE_FILE = "LICENSE.md"
"""Written when the license is ``other``: the card's ``license_link`` points to it."""
LICENSE_FILE_MARKER = "This export names no license from the Hub's list (`hisyngen export --license ID`)"
"""The words by which a LICENSE_FILE is known as hisyngen's (`hisyngen push` deletes only such a one)."""

SIZE_CATEGORIES = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B",
                   "1B<n<10B", "10B<n<100B", "100B<n<1T", "n>1T")
"""The Hub's ``size_categories`` buckets, smallest first: bucket ``i`` holds ``n < 10 ** (i + 3)``, the
last one the rest."""

HISYNSEG_CITATION = """@article{fang2025hisynseg,
  title   = {HisynSeg: Weakly-Supervised Histopathological Image Segmentation via Image-Mixing Synthesis and Consistency Regularization},
  author  = {Fang, Zijie and Wang, Yifeng and Xie, Peizhang and Wang, Zhi and Zhang, Yongbing},
  journal = {IEEE Transactions on Medical Imaging},
  year    = {2025},
  eprint  = {2412.20924},
  archivePrefix = {arXiv}
}"""

_MLPS_CITATION = """@article{han2022mlps,
  title   = {Multi-Layer Pseudo-Supervision for Histopathology Tissue Semantic Segmentation using Patch-level Classification Labels},
  author  = {Han, Chu and others},
  journal = {Medical Image Analysis},
  year    = {2022},
  eprint  = {2110.08048},
  archivePrefix = {arXiv}
}"""

SOURCE_CITATIONS = {
    "bcss-wsss": (_MLPS_CITATION, """@article{amgad2019bcss,
  title   = {Structured crowdsourcing enables convolutional segmentation of histology images},
  author  = {Amgad, Mohamed and others},
  journal = {Bioinformatics},
  year    = {2019}
}"""),
    "luad-histoseg": (_MLPS_CITATION,),
    "wsss4luad": ("""@article{han2022wsss4luad,
  title   = {WSSS4LUAD: Grand Challenge on Weakly-supervised Tissue Semantic Segmentation for Lung Adenocarcinoma},
  author  = {Han, Chu and others},
  journal = {arXiv preprint arXiv:2204.06455},
  year    = {2022}
}""",),
}
"""BibTeX of the built-in benchmarks (by spec name): the paper that published the weakly-labelled
benchmark (and, for BCSS-WSSS, the dataset its patches were cut from)."""


def default_tags(plan: ExportPlan) -> list[str]:
    """Card tags when ``--tag`` is not given."""
    return ["histopathology", "segmentation"] + (["synthetic"] if plan.corpora else [])


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


# --- dataset card ------------------------------------------------------------------------------

def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket (:data:`SIZE_CATEGORIES`) of ``n`` samples."""
    for power, name in enumerate(SIZE_CATEGORIES[:-1], start=3):
        if n < 10 ** power:
            return name
    return SIZE_CATEGORIES[-1]


def source_benchmark(spec: DatasetSpec) -> str | None:
    """The name of the built-in benchmark ``spec`` describes (same classes, palette, background), else None."""
    builtin = BUILTIN_SPECS.get(spec.name)
    return spec.name if builtin is not None and label_fields(builtin) == label_fields(spec) else None


def annotations_creators(counts: dict[str, int]) -> list[str]:
    """The Hub's ``annotations_creators`` of the export's labels."""
    creators = ["machine-generated"] if counts["train"] else []  # synthetic masks: made with their images
    if counts["train_real"] or counts["val"] or counts["test"]:
        creators.append("found")  # the source's own ground truth and image-level labels, as published
    return creators


def license_name(spec: DatasetSpec) -> str:
    """The card's ``license_name`` for ``license: other``: the source dataset's terms (:func:`license_text`)."""
    return f"{sanitize_id(spec.name).lower()}-terms"


def license_text(plan: ExportPlan) -> str:
    """:data:`LICENSE_FILE`, written when the license is ``other`` (the card's ``license_link``)."""
    name = plan.spec.name
    return (
        "# License\n\n"
        f"{LICENSE_FILE_MARKER}, so its card says `license: other`. Every image in it is a real image of the {name} dataset or was made from its images, "
        f"so the terms under which you obtained {name} apply to all of it. Check them before you share it, and "
        "export again with `--license ID` (an id from https://huggingface.co/docs/hub/repositories-licenses) "
        "once you know the license.\n"
    )


def subset_configs(counts: dict[str, int]) -> list[dict[str, Any]]:
    """The card's ``configs``: one per non-empty subset, one ``data_files`` entry per non-empty split."""
    configs = []
    for subset, folder in SUBSET_FOLDERS.items():
        files = [{"split": hf_split, "path": f"{folder}/{hf_split}-*"}
                 for split, (name, hf_split) in SUBSET_SPLITS.items() if name == subset and counts[split]]
        if files:
            configs.append({"config_name": subset, "data_files": files})
    return configs


def card_metadata(plan: ExportPlan, infos: Any, counts: dict[str, int], license: str,
                  tags: list[str]) -> "DatasetCardData":
    """The YAML header of the dataset card, per the Hub's dataset card specification."""
    from huggingface_hub import DatasetCardData

    other = {"license_name": license_name(plan.spec), "license_link": LICENSE_FILE} if license == "other" else {}
    metadata = DatasetCardData(
        license=license,
        annotations_creators=annotations_creators(counts),
        size_categories=[size_category(sum(counts.values()))],
        source_datasets=[plan.spec.name],
        task_categories=TASK_CATEGORIES,
        task_ids=TASK_IDS,
        pretty_name=f"hisyngen {plan.spec.name}",
        **other,
        tags=tags,
        configs=subset_configs(counts),
    )
    # `datasets`' own YAML form of the features and split sizes per subset, as its push_to_hub writes it.
    infos.to_dataset_card_data(metadata)
    # Every value made publishable before it is YAML: redacting the dumped text could break its syntax.
    return DatasetCardData(**_public_tree(metadata.to_dict(), plan))


def _public_tree(value: Any, plan: ExportPlan) -> Any:
    """``value`` (nested dicts and lists) with every string :func:`publishable`."""
    if isinstance(value, dict):
        return {key: _public_tree(item, plan) for key, item in value.items()}
    if isinstance(value, list):
        return [_public_tree(item, plan) for item in value]
    return publishable(value, plan) if isinstance(value, str) else value


def public_command(command: str, plan: ExportPlan) -> str:
    """A command line as :func:`hisyngen.safety.recorded_command` records one: secrets redacted, absolute
    paths as their last component (the program too); text that is no command line made :func:`publishable`."""
    try:
        args = shlex.split(command)
    except ValueError:  # unbalanced quotes: not a command line we can take apart
        args = []
    if not args:
        return publishable(command, plan)
    recorded = recorded_command(args[1:])  # "hisyngen ARGS": the program is ours to name
    return shlex.quote(Path(args[0]).name or args[0]) + recorded[len("hisyngen"):]


def _public_value(value: Any) -> Any:
    """A record value for a card table: an absolute path string as its last component."""
    return Path(value).name if isinstance(value, str) and os.path.isabs(value) and len(value) > 1 else value


def publishable(text: str, plan: ExportPlan) -> str:
    """``text`` as a published card may carry it: secrets redacted (:func:`hisyngen.safety.redact`) and the
    local folders of this export (source, corpora, the working and home folders) without their location."""
    text = redact(text)
    shown = {os.path.expanduser("~"): "~", os.getcwd(): "."}
    for folder in (Path(plan.source.root), *(c.folder for c in plan.corpora)):
        for form in (folder.absolute(), folder.resolve()):
            shown[str(form)] = form.name
    # The longest first, so a corpus inside the home folder shows as its name, not as ~/...; a path only
    # where it starts (the text's start, white space, a quote, =, an opening bracket or a separator of a
    # list) and where it ends (a separator, white space, quote or bracket), so /data never matches
    # /database, nor the /tmp/data of /var/tmp/data or of https://host/tmp/data.
    for path in sorted(shown, key=len, reverse=True):
        if os.path.isabs(path) and len(path) > 1:
            text = re.sub(r"(?<![^\s'\"`=(\[{<,;|])" + re.escape(path) + r"(?=$|[/\s'\"`|),;\]])",
                          lambda m: shown[path], text)
    return text


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


def use_it(counts: dict[str, int]) -> list[str]:
    """The card's "Use it" code: loads each subset the export has and reads a mask (a test runs it)."""
    pair_split = next((hf for split, (subset, hf) in SUBSET_SPLITS.items() if subset == PAIRS and counts[split]), None)
    code = ["import numpy as np", "from datasets import load_dataset", ""]
    if pair_split:
        code += [
            f'pairs = load_dataset("{REPO_PLACEHOLDER}")  # image/mask pairs: ' + ", ".join(
                hf for split, (subset, hf) in SUBSET_SPLITS.items() if subset == PAIRS and counts[split]),
            f'names = pairs["{pair_split}"].features["tissues"].feature.names  # index -> class, as id2label.json',
            f'row = pairs["{pair_split}"][0]',
            'image = np.array(row["image"].convert("RGB"))',
            f'mask = np.array(row["label"])  # class indices; {IGNORE_INDEX} = ignore',
            "print(image.shape, {names[c]: int((mask == c).sum()) for c in np.unique(mask) if c < len(names)})",
        ]
    if counts["train_real"]:
        code += [
            f'weak = load_dataset("{REPO_PLACEHOLDER}", "{WEAK}")  # real train images, image-level labels only',
            'print([weak["train"].features["tissues"].feature.int2str(c) for c in weak["train"][0]["tissues"]])',
        ]
    return ["```python", *code, "```"]


def transformers_notes(spec: DatasetSpec) -> list[str]:
    """What the stock transformers semantic-segmentation example needs to train on the default subset."""
    return [
        "The default subset is what the transformers semantic-segmentation example "
        "(`examples/pytorch/semantic-segmentation/run_semantic_segmentation.py`) reads: `image` and `label` "
        "columns, a `validation` split and `id2label.json`. Run it with `--dataset_name REPO_ID` and:", "",
        f"- {IGNORE_INDEX} is ignore. SegFormer's `semantic_loss_ignore_index` is {IGNORE_INDEX} by default; keep "
        f"the loss's ignore index at {IGNORE_INDEX} for any other model.",
        f"- Do not pass `--do_reduce_labels` (or the older `--reduce_labels`): index 0 is a tissue class "
        f"({spec.classes[0]}), not background, and reducing would shift every class by one.",
        f"- Its `compute_metrics` calls the `mean_iou` metric with `ignore_index=0`: change it to "
        f"`ignore_index={IGNORE_INDEX}`, or class 0 drops out of the scores and ignored pixels count against the "
        "predictions.",
    ]


def citations(spec: DatasetSpec) -> list[str]:
    """The card's BibTeX: HisynSeg and, for a built-in benchmark, the papers of its source data."""
    entries = [HISYNSEG_CITATION, *SOURCE_CITATIONS.get(source_benchmark(spec) or "", ())]
    return ["```bibtex", "\n\n".join(entries), "```"]


def dataset_card(plan: ExportPlan, infos: Any, counts: dict[str, int], per_strategy: dict[str, Counter], *,
                 command: str | None, license: str, tags: list[str]) -> str:
    """The dataset card: YAML header (:func:`card_metadata`) and a body describing the data, made
    :func:`publishable` and parsed back by ``huggingface_hub``'s :class:`~huggingface_hub.DatasetCard`."""
    from huggingface_hub import DatasetCard

    spec = plan.spec
    metadata = card_metadata(plan, infos, counts, license, tags)
    lines = [
        f"# hisyngen {spec.name}", "",
        f"Semantic segmentation dataset for H&E histopathology made with hisyngen {__version__} (HisynSeg) from the "
        f"weakly-labelled {spec.name} dataset. The default subset holds image/mask pairs: synthetic training images "
        "with exact pixel masks and the real validation/test images with their ground truth. The `weak` subset holds "
        "the real training images with their image-level tissue labels only.", "",
        "## Use it", "",
        *use_it(counts), "",
        f"`{REPO_PLACEHOLDER}` is this folder or its Hub repository (`NAMESPACE/NAME`).", "",
        "### Train with transformers", "",
        *transformers_notes(spec), "",
        "## Classes", "",
        "`label` is a palette PNG whose pixel values are class indices:", "",
        "| index | class | RGB |", "|---:|---|---|",
    ]
    lines += [f"| {i} | {name} | {tuple(spec.palette[i])} |" for i, name in enumerate(spec.classes)]
    lines += [
        f"| {IGNORE_INDEX} | ignore | - |", "",
        f"{IGNORE_INDEX} marks pixels no loss or metric may count: white slide background, excluded regions. "
        f"The source ground truth's background index ({spec.background_index}) is mapped to {IGNORE_INDEX}. "
        "`id2label.json` maps indices to names, `label2color.json` names to their RGB colour.", "",
        "## Subsets and splits", "",
        "| subset | split | samples | content |", "|---|---|---:|---|",
    ]
    content = {"train": "synthetic images, exact masks",
               "train_real": "real images, image-level `tissues` only (no `label` column)",
               "val": "real images, ground-truth masks", "test": "real images, ground-truth masks"}
    by_subset = sorted(SPLITS, key=lambda s: list(SUBSET_FOLDERS).index(SUBSET_SPLITS[s][0]))  # default first
    lines += [f"| {SUBSET_SPLITS[s][0]} | {SUBSET_SPLITS[s][1]} | {counts[s]} | {content[s]} |" for s in by_subset]
    if plan.strategies:
        lines += ["", "Synthetic samples per strategy:", "", "| strategy | samples |", "|---|---:|"]
        lines += [f"| {name} | {per_strategy['train'][name]} |" for name in plan.strategies]
    lines += [
        "", "## Columns", "",
        "Default subset:", "",
        "- `image`: RGB PNG; `label`: palette PNG mask (see Classes)",
        "- `tissues`: classes present in the mask (synthetic: the manifest's labels; validation/test: the ground truth)",
        f"- `strategy`: how the image was made ({', '.join(plan.strategies + [REAL])})",
        "- `disc_score`: discriminator realism score of a filtered corpus, else null; `seed`: the synthesis seed (null for real images)",
        "- `sources`: ids of the source images a sample was made from (a real image: its own id in the source); `id`: the sample id",
        "", f"`{WEAK}` subset: " + ", ".join(f"`{c}`" for c in WEAK_COLUMNS)
        + " as above; `tissues` are the image-level labels.",
        "", "## How it was generated", "",
    ]
    if command:  # inserted after the publishable() pass: redacting shell-quoted '***' again would unbalance it
        lines += ["Export command:", "", "```", _COMMAND_SLOT, "```", ""]
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
            lines += [f"| {_cell(k)} | {_cell(_public_value(v))} |" for k, v in flatten(shown).items()]
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
    lines += ["## License", ""]
    lines += ([f"`{license}`, chosen at export (`--license`). The images are real {spec.name} images or made from "
               f"them: the {spec.name} terms of use apply as well."] if license != "other" else
              [f"No license from the Hub's list was chosen at export; see [{LICENSE_FILE}]({LICENSE_FILE})."])
    lines += ["", "## Citation", "", "HisynSeg, the method" + (" and the source benchmark:" if source_benchmark(spec)
                                                            else ":"), "", *citations(spec), ""]
    body = publishable("\n".join(lines), plan).replace(_COMMAND_SLOT, public_command(command or "", plan))
    return str(DatasetCard(f"---\n{metadata.to_yaml()}\n---\n\n{body}"))


_COMMAND_SLOT = "\0command\0"
"""Where the export command goes into the card body (see :func:`dataset_card`)."""

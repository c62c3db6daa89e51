"""The dataset card of a Hugging Face export: the Hub's YAML metadata and the body describing the data.

The YAML header is built with ``huggingface_hub``'s ``DatasetCardData`` and repeats the subsets' features
and split sizes as ``datasets``' own ``push_to_hub`` writes them; the body says how to load and train on
the export, its classes, subsets, columns, provenance, filtering statistics, license and citations.
Everything in it is made publishable first (:mod:`hisyngen.export.provenance`): no secret and no local
absolute path. Layout and features: :mod:`hisyngen.export.hf`, docs/formats.md, "Hugging Face export".
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hisyngen import __version__
from hisyngen.export.common import REAL, SPLITS, ExportPlan, label_fields, sanitize_id
from hisyngen.export.hf import PAIRS, SUBSET_FOLDERS, SUBSET_SPLITS, WEAK, WEAK_COLUMNS
from hisyngen.export.provenance import corpus_command, public_command, public_tree, public_value, publishable
from hisyngen.spec import BUILTIN_SPECS, IGNORE_INDEX, DatasetSpec

if TYPE_CHECKING:
    from huggingface_hub import DatasetCardData

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
    return DatasetCardData(**public_tree(metadata.to_dict(), plan))


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
            lines += [f"| {_cell(k)} | {_cell(public_value(v))} |" for k, v in flatten(shown).items()]
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

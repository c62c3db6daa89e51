"""hisyngen export: MMSeg and Hugging Face layouts, pixel-exact round trips, refusals without leftovers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from hisyngen.corpus import Corpus, synthesize
from hisyngen.errors import HisynError
from hisyngen.export import export_dataset
from hisyngen.export.common import IdAllocator, sanitize_id, strip_common_folder
from hisyngen.imageio import encode_mask_png, read_mask, read_rgb
from hisyngen.sources import open_source
from hisyngen.spec import get_spec
from hisyngen.synthesis import make_strategy

from export_fixtures import BCSS, LABELS, TIF_NAME, check_hf_pixels, ground_truth, load_hf, make_corpora, make_source


def make_filtered(corpus: Path, out: Path) -> Path:
    """A copy of ``corpus`` that looks filtered: a ``filter`` record and per-sample ``disc_score``."""
    shutil.copytree(corpus, out)
    config = json.loads((out / "corpus.json").read_text())
    config["filter"] = {"model_sha256": "ab12", "selection": {"mode": "rank", "stratify": True, "oversample": 1.5},
                        "batch_size": 64,
                        "stats": {"attempted": 9, "kept": 6, "acceptance_rate": 0.667, "discriminator": {"f1": 0.9},
                                  "strata": [{"stratum": "1:0+1", "classes": "STR (TUM+STR)", "quota": 6, "scored": 9,
                                              "kept": 6, "acceptance": 0.666667, "mean_score": 0.51}],
                                  "class_mix": {"classes": ["TUM", "STR", "LYM", "NEC"],
                                                "candidates": [0.4, 0.6, 0.0, 0.0], "kept": [0.41, 0.59, 0.0, 0.0]}}}
    (out / "corpus.json").write_text(json.dumps(config))
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    (out / "manifest.jsonl").write_text("".join(json.dumps(dict(r, disc_score=0.5 + r["index"] / 100)) + "\n" for r in rows))
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-inputs")
    source = make_source(root / "src")
    mosaic, bezier = make_corpora(source, root)
    return source, [mosaic, make_filtered(bezier, root / "bezier-filtered")]


def leftovers(out: Path) -> list[str]:
    """Staging folders of an export to ``out`` that were not cleaned up."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


# --- ids ---------------------------------------------------------------------------------------

def test_ids_are_sanitised_and_unique_within_a_split():
    assert sanitize_id("training/TCGA-A1_MPP-0.25+8[0100]") == "training_TCGA-A1_MPP-0.25+8_0100"
    assert sanitize_id(".hidden") == "hidden" and sanitize_id("[]") == "sample"
    ids = IdAllocator()
    assert [ids.take(t) for t in ("a[1]", "a(1)", "A_1", "a_1-2")] == ["a_1", "a_1-2", "A_1-3", "a_1-2-2"]
    assert strip_common_folder(["val/img/a", "val/img/sub/b"]) == ["a", "sub/b"]
    assert strip_common_folder(["TUM/a", "STR/b"]) == ["TUM/a", "STR/b"]


# --- MMSeg -------------------------------------------------------------------------------------

def test_mmseg_export_round_trips_pixels_and_labels(inputs, tmp_path):
    source, corpora = inputs
    out = tmp_path / "mmseg"
    summary = export_dataset(corpora, source, "mmseg", out)
    assert summary.counts == {"train": 12, "train_real": len(LABELS) + 1, "val": 2, "test": 2}
    assert leftovers(out) == []

    meta = json.loads((out / "metainfo.json").read_text())
    assert meta["classes"] == list(BCSS.classes) and meta["palette"] == [list(c) for c in BCSS.palette[:4]]
    assert meta["ignore_index"] == 255 and meta["source_background_index"] == 4
    assert meta["strategies"] == ["bezier", "mosaic"]

    rows = [json.loads(line) for line in (out / "synthetic.jsonl").read_text().splitlines()]
    assert (out / "splits" / "train.txt").read_text().split() == [r["id"] for r in rows]
    by_id = {r["id"]: r for r in rows}
    for folder in corpora:
        corpus = Corpus(folder)
        for row in corpus.rows():
            exported = by_id[row["id"]]
            assert exported["strategy"] == corpus.config.strategy and exported["labels"] == row["labels"]
            assert exported["sources"] == row["sources"] and exported["seed"] == 0
            assert exported["disc_score"] == row.get("disc_score")
            assert (out / "img_dir" / "train" / f"{row['id']}.png").read_bytes() == corpus.image_path(row).read_bytes()
            mask_path = out / "ann_dir" / "train" / f"{row['id']}.png"
            np.testing.assert_array_equal(read_mask(mask_path), read_mask(corpus.mask_path(row)))
    assert any(r["disc_score"] is not None for r in rows) and any(r["disc_score"] is None for r in rows)

    real = {r["source"]: r for r in map(json.loads, (out / "real.jsonl").read_text().splitlines())}
    assert len(real) == len(source.train) and f"training/{TIF_NAME}" in real
    for record in source.train:
        row = real[record.path.relative_to(source.root).as_posix()]
        assert tuple(row["labels"]) == record.labels
        np.testing.assert_array_equal(read_rgb(out / "img_dir" / "train_real" / f"{row['id']}.png"), read_rgb(record.path))
    assert not any((out / "ann_dir").glob("train_real*/*"))

    for split, records in (("val", source.val), ("test", source.test)):
        ids = (out / "splits" / f"{split}.txt").read_text().split()
        assert ids == [r.path.stem for r in records]
        for sample_id, record in zip(ids, records):
            exported = Image.open(out / "ann_dir" / split / f"{sample_id}.png")
            assert exported.mode == "P"
            np.testing.assert_array_equal(np.array(exported), ground_truth(record))
            assert 4 not in np.unique(np.array(exported))


@pytest.fixture(scope="module")
def mmseg_classes():
    """mmseg's BaseSegDataset and LoadAnnotations (mmseg imports need hisyngen's compat shim first)."""
    pytest.importorskip("mmseg")
    import hisyngen.mmseg  # noqa: F401  (compat.apply(): mmcv-lite has no compiled ops)
    from mmseg.datasets import BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations

    return BaseSegDataset, LoadAnnotations


def test_mmseg_export_loads_with_mmseg_base_dataset(inputs, tmp_path, mmseg_classes):
    BaseSegDataset, LoadAnnotations = mmseg_classes
    source, corpora = inputs
    out = tmp_path / "mmseg"
    export_dataset(corpora, source, "mmseg", out)
    meta = json.loads((out / "metainfo.json").read_text())
    metainfo = dict(classes=tuple(meta["classes"]), palette=meta["palette"])
    for split, ann_file in (("val", ""), ("train", "splits/train.txt")):
        dataset = BaseSegDataset(data_root=str(out), ann_file=ann_file, metainfo=metainfo, img_suffix=".png",
                                 seg_map_suffix=".png", pipeline=[],
                                 data_prefix=dict(img_path=f"img_dir/{split}", seg_map_path=f"ann_dir/{split}"))
        ids = (out / "splits" / f"{split}.txt").read_text().split()
        assert len(dataset) == len(ids) > 0
        for i in range(len(dataset)):
            info = dataset.get_data_info(i)
            loaded = LoadAnnotations()(dict(info))["gt_seg_map"]
            np.testing.assert_array_equal(loaded, read_mask(info["seg_map_path"]))
            assert set(np.unique(loaded)) <= {0, 1, 2, 3, 255}


def test_mmseg_export_feeds_the_hisyngen_training_datasets(inputs, tmp_path, mmseg_classes):
    from hisyngen.mmseg.datasets import HisynEvalDataset, HisynMixedDataset

    source, corpora = inputs
    out = tmp_path / "mmseg"
    export_dataset(corpora, source, "mmseg", out)
    mixed = HisynMixedDataset(data_root=str(out), pipeline=[])
    assert len(mixed) == 12 + len(source.train)
    assert sum(mixed.synthetic_flags()) == 12
    assert len(HisynEvalDataset(data_root=str(out), split="test", pipeline=[])) == 2


# --- Hugging Face ------------------------------------------------------------------------------

def test_hf_export_loads_offline_and_round_trips_pixels(inputs, tmp_path, monkeypatch):
    source, corpora = inputs
    out = tmp_path / "hf"
    summary = export_dataset(corpora, source, "hf", out, command="hisyngen export mosaic bezier-filtered -f hf",
                             license="cc-by-4.0", tags=["histopathology", "bcss"], max_shard_bytes=6_000)
    assert summary.counts["train"] == 12 and leftovers(out) == []
    shards = sorted(p.name for p in (out / "data").iterdir())
    train_shards = [s for s in shards if s.startswith("train-")]
    assert len(train_shards) > 1  # the size cap split it
    assert train_shards == [f"train-{i:05d}-of-{len(train_shards):05d}.parquet" for i in range(len(train_shards))]
    assert {s.split("-")[0] for s in shards} == {"train", "validation", "test"}
    assert {p.name.split("-")[0] for p in (out / "weak").iterdir()} == {"train"}
    assert json.loads((out / "id2label.json").read_text()) == {"0": "TUM", "1": "STR", "2": "LYM", "3": "NEC"}
    assert json.loads((out / "label2color.json").read_text()) == {
        "TUM": [255, 0, 0], "STR": [0, 255, 0], "LYM": [0, 0, 255], "NEC": [153, 0, 255]}

    ds = load_hf(out, tmp_path / "cache", monkeypatch)
    weak = load_hf(out, tmp_path / "cache", monkeypatch, "weak")
    # Different content is a subset, not a split: the default subset holds image/mask pairs only.
    assert set(ds) == {"train", "validation", "test"} and weak.num_rows == {"train": len(LABELS) + 1}
    assert all(row["label"] is not None for split in ds.values() for row in split)
    features = ds["train"].features
    assert features["tissues"].feature.names == list(BCSS.classes)
    assert features["strategy"].names == ["bezier", "mosaic", "real"]
    assert str(features["disc_score"].dtype) == "float32" and str(features["seed"].dtype) == "int64"
    check_hf_pixels(ds, weak, source, corpora)
    scores = {row["id"]: row["disc_score"] for row in ds["train"]}
    assert scores["mosaic-s0-000000"] is None and scores["bezier-s0-000003"] == pytest.approx(0.53)


def test_hf_card_yaml_parses_and_body_documents_the_export(inputs, tmp_path):
    source, corpora = inputs
    out = tmp_path / "hf"
    export_dataset(corpora, source, "hf", out, command="hisyngen export A B --format hf", license="cc-by-4.0",
                   tags=["histopathology", "bcss"])
    text = (out / "README.md").read_text()
    header, body = text.split("\n---\n", 1)
    meta = yaml.safe_load(header.removeprefix("---\n"))
    assert meta["license"] == "cc-by-4.0" and meta["tags"] == ["histopathology", "bcss"]
    assert meta["task_categories"] == ["image-segmentation"] and meta["task_ids"] == ["semantic-segmentation"]
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"},
                                                  {"split": "validation", "path": "data/validation-*"},
                                                  {"split": "test", "path": "data/test-*"}]},
        {"config_name": "weak", "data_files": [{"split": "train", "path": "weak/train-*"}]}]
    infos = {info["config_name"]: info for info in meta["dataset_info"]}
    features = {f["name"]: f for f in infos["default"]["features"]}
    assert features["tissues"]["list"]["class_label"]["names"] == {"0": "TUM", "1": "STR", "2": "LYM", "3": "NEC"}
    assert [f["name"] for f in infos["weak"]["features"]] == ["image", "tissues", "sources", "id"]
    assert {s["name"]: s["num_examples"] for s in infos["default"]["splits"]} == {"train": 12, "validation": 2, "test": 2}
    assert {s["name"]: s["num_examples"] for s in infos["weak"]["splits"]} == {"train": len(LABELS) + 1}

    assert "| 0 | TUM | (255, 0, 0) |" in body and "| 255 | ignore |" in body
    assert "hisyngen export A B --format hf" in body
    # The source by its folder name: a published card carries no local absolute path (issue 15).
    assert f"hisyngen synth {source.root.name} -s mosaic -n 6 --seed 0 -o mosaic --size 32" in body
    assert (f"hisyngen filter {source.root.name} -s bezier -m DISCRIMINATOR -n 6 --seed 0 --selection=rank "
            "--oversample 1.5 --no-match-area --batch-size 64 -o bezier-filtered --size 32") in body  # (a rank
    # corpus.json without match_area, as written before it existed: selected without it)
    assert "| mosaic | 6 |" in body and "| bezier | 6 |" in body
    assert "| stats.acceptance_rate | 0.667 |" in body and "| stats.discriminator.f1 | 0.9 |" in body
    assert "| selection.mode | rank |" in body and "| selection.oversample | 1.5 |" in body
    # the per-stratum report and class mix as their own table and line, not a JSON blob in a cell
    assert "| STR (TUM+STR) | 6 | 6 | 9 | 66.7% | 0.510 |" in body and "stats.strata" not in body
    assert "Class pixel share, scored candidates -> kept: TUM 40.0% -> 41.0% · STR 60.0% -> 59.0%" in body
    defaults = export_dataset([], source, "hf", tmp_path / "real-only")
    meta = yaml.safe_load((tmp_path / "real-only" / "README.md").read_text().split("\n---\n")[0].removeprefix("---\n"))
    assert meta["license"] == "other" and meta["tags"] == ["histopathology", "segmentation"]
    assert defaults.counts["train"] == 0
    assert [(c["config_name"], [f["split"] for f in c["data_files"]]) for c in meta["configs"]] == [
        ("default", ["validation", "test"]), ("weak", ["train"])]


def card_of(folder: Path):
    """The export's card parsed by huggingface_hub (raises on YAML the Hub could not read)."""
    from huggingface_hub import DatasetCard

    return DatasetCard.load(folder / "README.md")


# The Hub's dataset card specification (hub-docs datasetcard.md, huggingface_hub's DatasetCardData).
HUB_ANNOTATIONS_CREATORS = {"found", "crowdsourced", "expert-generated", "machine-generated", "no-annotation", "other"}


def test_hf_card_metadata_follows_the_hub_spec(inputs, tmp_path):
    from datasets.utils.metadata import MetadataConfigs

    from hisyngen.export.hf_card import SIZE_CATEGORIES

    source, corpora = inputs
    export_dataset(corpora, source, "hf", tmp_path / "hf")  # no --license: `other`, which needs its name and link
    card = card_of(tmp_path / "hf")
    data = card.data
    assert data.license == "other" and data.license_name == "bcss-wsss-terms" and data.license_link == "LICENSE.md"
    assert "bcss-wsss" in (tmp_path / "hf" / "LICENSE.md").read_text() and "[LICENSE.md](LICENSE.md)" in card.text
    assert data.task_categories == ["image-segmentation"] and data.task_ids == ["semantic-segmentation"]
    assert data.annotations_creators == ["machine-generated", "found"]
    assert set(data.annotations_creators) <= HUB_ANNOTATIONS_CREATORS
    assert data.source_datasets == ["bcss-wsss"] and data.size_categories == ["n<1K"]
    assert data.size_categories[0] in SIZE_CATEGORIES
    assert data.tags == ["histopathology", "segmentation", "synthetic"]
    # `datasets` reads the configs the way load_dataset does
    configs = MetadataConfigs.from_dataset_card_data(data)
    assert sorted(configs) == ["default", "weak"]
    # the citation block: HisynSeg and the benchmark the source is
    assert "@article{fang2025hisynseg" in card.text and "2412.20924" in card.text and "IEEE Transactions on Medical Imaging" in card.text
    assert "2110.08048" in card.text and "amgad2019bcss" in card.text
    # the stock transformers example's needs
    assert "`ignore_index=255`" in card.text and "`--do_reduce_labels`" in card.text and "`--reduce_labels`" in card.text

    chosen = export_dataset(corpora[:1], source, "hf", tmp_path / "cc", license="cc-by-4.0")
    data = card_of(tmp_path / "cc").data
    assert chosen.counts["train"] == 6 and data.license == "cc-by-4.0"
    assert data.get("license_name") is None and data.get("license_link") is None
    assert not (tmp_path / "cc" / "LICENSE.md").exists()
    export_dataset([], source, "hf", tmp_path / "real-only")  # no synthetic masks: nothing machine-generated
    assert card_of(tmp_path / "real-only").data.annotations_creators == ["found"]


def test_size_categories_are_the_hubs_buckets():
    from hisyngen.export.hf_card import size_category

    assert [size_category(n) for n in (0, 999, 1_000, 9_999, 10_000, 999_999, 1_000_000, 10 ** 8, 10 ** 9)] == [
        "n<1K", "n<1K", "1K<n<10K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "100M<n<1B", "1B<n<10B"]
    assert size_category(10 ** 12) == "n>1T"


def test_citations_name_the_source_benchmark_only_when_the_spec_is_it():
    from hisyngen.export.hf_card import citations
    from hisyngen.spec import DatasetSpec

    assert "2204.06455" in "\n".join(citations(get_spec("wsss4luad")))
    assert "2110.08048" in "\n".join(citations(get_spec("luad-histoseg")))
    # A custom spec that borrows a built-in name but not its classes is not that benchmark.
    custom = DatasetSpec.from_dict({"name": "bcss-wsss", "classes": ["a", "b"]})
    text = "\n".join(citations(custom))
    assert "2412.20924" in text and "2110.08048" not in text


SECRET = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345"  # shaped like a Hub user access token


def test_hf_card_carries_no_secret_and_no_local_path(inputs, tmp_path):
    source, corpora = inputs
    filtered = copy_corpus(corpora[1], tmp_path / "work" / "bezier-filtered")
    config = json.loads((filtered / "corpus.json").read_text())
    config["filter"]["model"] = str(tmp_path / "work" / "filters" / "bezier" / "model.pt")  # a hand-made record
    (filtered / "corpus.json").write_text(json.dumps(config))
    out = tmp_path / "work" / "hf"
    # An API caller's own command line: absolute paths anywhere, a token in both option forms.
    command = (f"python /opt/lab/bin/make_export.py {corpora[0]} {filtered} --source {source.root} "
               f"--token {SECRET} --token={SECRET} -o {out} --notes /srv/private/alice/notes.txt")
    export_dataset([corpora[0], filtered], source, "hf", out, command=command, tags=["histopathology", SECRET])
    written = {p.name: p.read_text() for p in out.iterdir() if p.suffix in (".md", ".json")}
    assert {"README.md", "LICENSE.md", "id2label.json", "label2color.json"} <= set(written)
    for name, text in written.items():
        assert SECRET not in text, name
        for local in (str(tmp_path), "/opt/lab", "/srv/private", str(source.root)):
            assert local not in text, (name, local)
    card = written["README.md"]
    assert ("make_export.py mosaic bezier-filtered --source src --token '***' '--token=***' -o hf "
            "--notes notes.txt") in card
    assert "| model | model.pt |" in card
    assert card_of(out).data.tags == ["histopathology", "***"]


def test_a_local_folder_is_shortened_only_where_a_path_starts(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from hisyngen.export.provenance import publishable

    cwd = tmp_path / "data"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    plan = SimpleNamespace(source=SimpleNamespace(root=tmp_path / "src"), corpora=[])
    kept = [f"/var{cwd}/file.txt", f"https://host{cwd}/page", f"{cwd}base/x"]  # other paths, a URL, a longer name
    for text in kept:
        assert publishable(text, plan) == text
    for text, shown in ((f"{cwd}/x", "./x"), (f"-o {cwd}/x", "-o ./x"), (f"--out={cwd}", "--out=."),
                        (f"[notes]({cwd}/n.md)", "[notes](./n.md)"), (f"'{cwd}/a b'", "'./a b'"),
                        (f"{tmp_path / 'src'}/y", "src/y")):
        assert publishable(text, plan) == shown


def test_hf_card_use_it_code_runs_against_the_export(inputs, tmp_path):
    from hisyngen.export.hf_card import REPO_PLACEHOLDER

    source, corpora = inputs
    scripts = []
    for name, chosen in (("hf", corpora), ("real-only", [])):
        export_dataset(chosen, source, "hf", tmp_path / name)
        text = (tmp_path / name / "README.md").read_text()
        code = text.split("## Use it", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
        assert REPO_PLACEHOLDER in code
        scripts.append(code.replace(REPO_PLACEHOLDER, str(tmp_path / name)))
    assert 'load_dataset("' + str(tmp_path / "hf") + '", "weak")' in scripts[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", "\n".join(scripts)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    printed = run.stdout.splitlines()
    assert len(printed) == 4 and printed[0].startswith("(32, 32, 3) {") and printed[2].startswith("(32, 32, 3) {")
    assert set(eval(printed[1])) <= set(BCSS.classes) and eval(printed[1])  # the first weak image's tissue names


# --- bad input: refuse clearly, leave nothing --------------------------------------------------

def copy_corpus(folder: Path, out: Path) -> Path:
    shutil.copytree(folder, out)
    return out


@pytest.mark.parametrize("fmt", ["mmseg", "hf"])
def test_missing_corpus_file_is_named_and_nothing_is_written(inputs, tmp_path, fmt):
    source, corpora = inputs
    broken = copy_corpus(corpora[0], tmp_path / "broken")
    (broken / "masks" / "mosaic-s0-000004.png").unlink()
    out = tmp_path / "out"
    with pytest.raises(HisynError, match=r"missing file .*masks/mosaic-s0-000004\.png"):
        export_dataset([broken], source, fmt, out)
    assert not out.exists() and leftovers(out) == []


@pytest.mark.parametrize("fmt", ["mmseg", "hf"])
def test_mask_values_outside_the_spec_are_refused_naming_the_file(inputs, tmp_path, fmt):
    source, corpora = inputs
    broken = copy_corpus(corpora[1], tmp_path / "broken")
    mask = read_mask(broken / "masks" / "bezier-s0-000002.png")
    mask[0, 0] = 4  # the background index: valid in ground truth, never in a synthetic mask
    (broken / "masks" / "bezier-s0-000002.png").write_bytes(encode_mask_png(mask, BCSS.mask_palette()))
    out = tmp_path / "new" / "deep" / "out"
    with pytest.raises(HisynError, match=r"bezier-s0-000002\.png: mask values \[4\] are outside the bcss-wsss spec"):
        export_dataset([corpora[0], broken], source, fmt, out)
    assert not (tmp_path / "new").exists()  # nor the parent folders it made


@pytest.mark.parametrize("damage, message", [
    (lambda rows: rows[:-1] + [rows[-1][:20]], r"manifest\.jsonl:6: not valid JSON"),
    (lambda rows: rows[:2] + [json.dumps({k: v for k, v in json.loads(rows[2]).items() if k != "labels"})] + rows[3:],
     r"manifest\.jsonl:3: \"labels\" must be 4 values of 0/1 .*got None"),
    (lambda rows: [json.dumps(dict(json.loads(rows[0]), labels=[1, 0, 0, 0, 0, 0, 1]))] + rows[1:],
     r"manifest\.jsonl:1: \"labels\" must be 4 values of 0/1"),
])
def test_a_damaged_manifest_is_refused_with_its_line(inputs, tmp_path, damage, message):
    source, corpora = inputs
    broken = copy_corpus(corpora[0], tmp_path / "broken")
    rows = (broken / "manifest.jsonl").read_text().splitlines()
    (broken / "manifest.jsonl").write_text("\n".join(damage(rows)) + "\n")
    out = tmp_path / "deep" / "out"
    for fmt in ("mmseg", "hf"):
        with pytest.raises(HisynError, match=message):
            export_dataset([broken], source, fmt, out)
    assert not (tmp_path / "deep").exists()  # not even the parent folder it would have made


def test_source_files_the_reader_skipped_are_reported(tmp_path):
    source_root = tmp_path / "src"
    make_source(source_root)
    (sorted((source_root / "val" / "mask").iterdir())[0]).unlink()  # a val image without its mask
    summary = export_dataset([], open_source(source_root), "mmseg", tmp_path / "out")
    assert summary.counts["val"] == 1
    assert any("1 x missing-mask not exported" in w for w in summary.warnings), summary.warnings


def test_ground_truth_values_outside_the_spec_are_refused(tmp_path):
    source = make_source(tmp_path / "src")
    bad = source.test[1].mask_path
    mask = read_mask(bad)
    mask[3, 3] = 9
    bad.write_bytes(encode_mask_png(mask, BCSS.mask_palette()))
    with pytest.raises(HisynError, match=rf"{bad.name}: mask values \[9\] are outside .*ground truth may hold 0..3, 4 \(background\), 255"):
        export_dataset([], source, "mmseg", tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path / "out") == []


def test_mixed_class_specs_are_refused_naming_both(inputs, tmp_path):
    source, corpora = inputs
    luad_spec = get_spec("luad-histoseg")
    luad = make_source(tmp_path / "luad", luad_spec, [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)])
    synthesize(luad, make_strategy("mosaic", {"size": 32}), tmp_path / "luad-mosaic", 2, seed=0)
    with pytest.raises(HisynError, match=r"mixed class specs: corpus .*luad-mosaic \(luad-histoseg: classes TE, NEC, LYM, TAS.*"
                                         r"vs source .*\(bcss-wsss: classes TUM, STR, LYM, NEC.*differ in classes"):
        export_dataset([corpora[0], tmp_path / "luad-mosaic"], source, "hf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite_and_survives_a_failed_export(inputs, tmp_path):
    source, corpora = inputs
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(HisynError, match="exists and is not empty; pass --overwrite"):
        export_dataset(corpora, source, "mmseg", out)
    with pytest.raises(HisynError, match="is not a hisyngen export; refusing to replace it"):
        export_dataset(corpora, source, "mmseg", out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

    shutil.rmtree(out)
    export_dataset(corpora[:1], source, "mmseg", out)
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    broken = copy_corpus(corpora[1], tmp_path / "broken")
    mask = read_mask(broken / "masks" / "bezier-s0-000005.png")
    mask[1, 1] = 77
    (broken / "masks" / "bezier-s0-000005.png").write_bytes(encode_mask_png(mask, BCSS.mask_palette()))
    with pytest.raises(HisynError, match="mask values \\[77\\]"):
        export_dataset([corpora[0], broken], source, "mmseg", out, overwrite=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before and leftovers(out) == []

    summary = export_dataset(corpora, source, "mmseg", out, overwrite=True)
    assert summary.counts["train"] == 12 and len((out / "splits" / "train.txt").read_text().split()) == 12
    assert leftovers(out) == []


def test_output_may_not_replace_an_input(inputs, tmp_path):
    source, corpora = inputs
    with pytest.raises(HisynError, match="would replace the input"):
        export_dataset(corpora, source, "mmseg", corpora[0].parent, overwrite=True)
    assert (corpora[0] / "manifest.jsonl").is_file()


# --- CLI ---------------------------------------------------------------------------------------

@pytest.fixture
def run_cli():
    from hisyngen.cli import cli

    runner = CliRunner()
    return lambda *args: runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_cli_export_writes_and_refuses_in_one_line(inputs, tmp_path, run_cli):
    source, corpora = inputs
    help_text = run_cli("export", "--help").output
    assert "Examples:" in help_text and "--format" in help_text and "--overwrite" in help_text
    assert "Examples:" in run_cli("push", "--help").output

    result = run_cli("export", *corpora, "--source", source.root, "-f", "mmseg", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["counts"]["train"] == 12
    again = run_cli("export", *corpora, "--source", source.root, "-f", "mmseg", "-o", tmp_path / "out", "-q")
    assert again.exit_code == 1
    assert again.output.strip().count("\n") == 0 and again.output.startswith("error: ") and "--overwrite" in again.output


# --- real data (../shared/data) ----------------------------------------------------------------

def test_real_bcss_mini_exports_load_with_mmseg_and_datasets(shared_data, tmp_path, monkeypatch, mmseg_classes):
    BaseSegDataset, LoadAnnotations = mmseg_classes
    source = open_source(shared_data / "bcss-wsss-mini")
    corpora = []
    for name in ("mosaic", "bezier"):
        synthesize(source, make_strategy(name, {}), tmp_path / name, 8, seed=1)
        corpora.append(tmp_path / name)
    export_dataset(corpora, source, "mmseg", tmp_path / "mmseg")
    export_dataset(corpora, source, "hf", tmp_path / "hf")

    meta = json.loads((tmp_path / "mmseg" / "metainfo.json").read_text())
    metainfo = dict(classes=tuple(meta["classes"]), palette=meta["palette"])
    for split, ann_file in (("train", "splits/train.txt"), ("val", "splits/val.txt"), ("test", "")):
        dataset = BaseSegDataset(data_root=str(tmp_path / "mmseg"), ann_file=ann_file, metainfo=metainfo,
                                 img_suffix=".png", seg_map_suffix=".png", pipeline=[],
                                 data_prefix=dict(img_path=f"img_dir/{split}", seg_map_path=f"ann_dir/{split}"))
        assert len(dataset) == (16 if split == "train" else 14)
        for i in range(0, len(dataset), 3):
            info = dataset.get_data_info(i)
            np.testing.assert_array_equal(LoadAnnotations()(dict(info))["gt_seg_map"], read_mask(info["seg_map_path"]))

    ds = load_hf(tmp_path / "hf", tmp_path / "cache", monkeypatch)
    weak = load_hf(tmp_path / "hf", tmp_path / "cache", monkeypatch, "weak")
    assert ds.num_rows == {"train": 16, "validation": 14, "test": 14} and weak.num_rows == {"train": 238}
    check_hf_pixels(ds, weak, source, corpora)


def test_real_wsss4luad_val_images_are_kept_whole(shared_data, tmp_path):
    source = open_source(shared_data / "wsss4luad-mini")
    summary = export_dataset([], source, "mmseg", tmp_path / "out")
    assert summary.counts == {"train": 0, "train_real": 4, "val": 31, "test": 0}
    ids = (tmp_path / "out" / "splits" / "val.txt").read_text().split()
    sizes = set()
    for sample_id, record in zip(ids, source.val):
        exported = read_mask(tmp_path / "out" / "ann_dir" / "val" / f"{sample_id}.png")
        truth = read_mask(record.mask_path)
        truth[truth == 3] = 255
        np.testing.assert_array_equal(exported, truth)
        assert read_rgb(tmp_path / "out" / "img_dir" / "val" / f"{sample_id}.png").shape[:2] == truth.shape
        sizes.add(truth.shape)
    assert len(sizes) > 10 and max(max(s) for s in sizes) > 224  # whole images of varying size, not tiles

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hisyngen.cli import cli
from hisyngen.errors import HisynError
from hisyngen.imageio import read_rgb
from hisyngen.sources import BackgroundParams, background_mask, build_pool_pack, detect_layout, open_source
from hisyngen.sources.inspect import inspect_source
from hisyngen.spec import get_spec

from fixtures import tissue_image, write_benchmark, write_mask, write_rgb

LUAD_LABELS = [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 0, 1), (1, 0, 0, 1), (0, 1, 1, 0)]


def kinds(problems):
    return sorted(p.kind for p in problems)


# --- layouts -------------------------------------------------------------------------------

def test_luad_histoseg_layout(tmp_path):
    write_benchmark(tmp_path, get_spec("luad-histoseg"), LUAD_LABELS, style="spaces")
    assert detect_layout(tmp_path) == "luad-histoseg"
    source = open_source(tmp_path)
    assert source.spec.name == "luad-histoseg"
    assert [r.labels for r in source.train] == LUAD_LABELS
    assert len(source.val) == 2 and len(source.test) == 2
    assert all(r.mask_path.parent.name == "mask" for r in source.val)
    pools = source.single_tissue_pools()
    assert {c: len(v) for c, v in pools.items()} == {0: 1, 1: 1, 2: 0, 3: 1}
    assert [r.labels for r in source.multi_tissue()] == [(1, 0, 0, 1), (0, 1, 1, 0)]
    assert source.problems == []


@pytest.mark.parametrize("train_dir", ["training", "train"])
def test_bcss_layout_accepts_both_train_folder_names(tmp_path, train_dir):
    write_benchmark(tmp_path, get_spec("bcss-wsss"), LUAD_LABELS, style="run", train_dir=train_dir)
    source = open_source(tmp_path)
    assert source.spec.name == "bcss-wsss" and len(source.train) == 5


def test_wsss4luad_layout_and_missing_test_split(tmp_path):
    write_benchmark(tmp_path, get_spec("wsss4luad"), [(1, 0, 0), (1, 1, 0)], style="commas", n_test=0)
    source = open_source(tmp_path)
    assert source.spec.name == "wsss4luad" and source.train[1].labels == (1, 1, 0)
    assert kinds(source.problems) == ["missing-split"]
    assert "3.testing" in str(source.problems[0])


def test_forced_dataset_and_wrong_label_length(tmp_path):
    # BCSS-style 4-digit names read with the 3-class WSSS4LUAD spec: every name is refused, by name.
    write_benchmark(tmp_path, get_spec("bcss-wsss"), LUAD_LABELS, style="run")
    spec_dirs = {"train": ["training"], "val": ["val"], "test": ["test"]}
    spec = get_spec("wsss4luad").to_dict() | {"name": "three", "split_dirs": spec_dirs}
    (tmp_path / "s.json").write_text(json.dumps(spec))
    source = open_source(tmp_path, spec=tmp_path / "s.json")
    assert source.train == []
    assert kinds(source.problems) == ["unparseable-name"] * 5
    assert "4 values, the dataset has 3" in source.problems[0].message


def test_names_without_labels_and_all_zero_labels(tmp_path):
    write_benchmark(tmp_path, get_spec("luad-histoseg"), LUAD_LABELS, style="spaces", n_val=0, n_test=0)
    write_rgb(tmp_path / "train" / "nolabel.png", tissue_image(0))
    write_rgb(tmp_path / "train" / "zero-[0 0 0 0].png", tissue_image(0))
    (tmp_path / "train" / "notes.txt").write_text("x")
    source = open_source(tmp_path, dataset="luad-histoseg")
    assert len(source.train) == 5
    assert kinds(source.problems) == ["all-zero-labels", "missing-split", "missing-split", "not-an-image", "unparseable-name"]
    assert any("nolabel.png" in str(p) for p in source.problems)


def test_missing_and_orphan_masks(tmp_path):
    spec = get_spec("luad-histoseg")
    write_benchmark(tmp_path, spec, LUAD_LABELS, style="spaces", n_val=2, n_test=1)
    (tmp_path / "val" / "mask" / "val0.png").unlink()
    write_mask(tmp_path / "test" / "mask" / "stray.png", np.zeros((4, 4), np.uint8))
    source = open_source(tmp_path)
    assert [r.id for r in source.val] == ["val/img/val1"]
    assert kinds(source.problems) == ["missing-mask", "orphan-mask"]


def test_no_layout_is_fatal_with_a_hint(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(HisynError, match="pass --dataset or --spec"):
        open_source(tmp_path)
    with pytest.raises(HisynError, match="does not exist"):
        open_source(tmp_path / "nope")


def test_forced_dataset_without_any_split_folder(tmp_path):
    with pytest.raises(HisynError, match="none of the bcss-wsss split folders"):
        open_source(tmp_path, dataset="bcss-wsss")


def test_duplicate_stems_are_reported(tmp_path):
    write_benchmark(tmp_path, get_spec("luad-histoseg"), LUAD_LABELS[:1], style="spaces", n_val=0, n_test=0)
    name = next((tmp_path / "train").iterdir()).stem
    write_rgb(tmp_path / "train" / f"{name}.tif", tissue_image(0))
    source = open_source(tmp_path)
    assert len(source.train) == 1 and "duplicate-id" in kinds(source.problems)


# --- generic sources -----------------------------------------------------------------------

def test_class_prefixed_files(tmp_path):
    for i, name in enumerate(["ADI-a.png", "ADI_b.png", "TUM-c.tif", "LYM-d.png"]):
        write_rgb(tmp_path / name, tissue_image(i))
    write_rgb(tmp_path / "0000.png", tissue_image(0))
    source = open_source(tmp_path)
    assert source.layout == "folder" and source.spec.classes == ("ADI", "LYM", "TUM")
    assert {r.id: r.labels for r in source.train} == {
        "ADI-a": (1, 0, 0), "ADI_b": (1, 0, 0), "LYM-d": (0, 1, 0), "TUM-c": (0, 0, 1)}
    assert kinds(source.problems) == ["unparseable-name"]


def test_class_subfolders(tmp_path):
    write_rgb(tmp_path / "stroma" / "1.png", tissue_image(1))
    write_rgb(tmp_path / "tumor" / "2.png", tissue_image(0))
    source = open_source(tmp_path)
    assert source.spec.classes == ("stroma", "tumor")
    assert [(r.id, r.labels) for r in source.train] == [("stroma/1", (1, 0)), ("tumor/2", (0, 1))]


def test_csv_manifest_with_vectors_names_and_splits(tmp_path):
    write_rgb(tmp_path / "a.png", tissue_image(0))
    write_rgb(tmp_path / "b.png", tissue_image(1))
    write_rgb(tmp_path / "v.png", tissue_image(1))
    write_mask(tmp_path / "v_mask.png", np.zeros((32, 32), np.uint8))
    (tmp_path / "m.csv").write_text(
        "path,labels,split,mask\n"
        'a.png,"[1, 0]",train,\n'
        "b.png,0 1,,\n"
        "missing.png,1 0,,\n"
        "a.png,,train,\n"
        "v.png,,val,v_mask.png\n"
    )
    source = open_source(tmp_path / "m.csv")
    assert source.spec.classes == ("class0", "class1")
    assert [r.labels for r in source.train] == [(1, 0), (0, 1)]
    assert [r.mask_path.name for r in source.val] == ["v_mask.png"]
    assert kinds(source.problems) == ["missing-file", "unparseable-labels"]


def test_jsonl_manifest_with_class_names(tmp_path):
    write_rgb(tmp_path / "x" / "a.png", tissue_image(0))
    write_rgb(tmp_path / "x" / "b.png", tissue_image(1))
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"path": "x/a.png", "labels": ["TUM", "NEC"]}) + "\n"
        + json.dumps({"path": "x/b.png", "labels": ["FAT"]}) + "\n"
    )
    source = open_source(tmp_path / "m.jsonl", dataset="bcss-wsss")
    assert [r.labels for r in source.train] == [(1, 0, 0, 1)]
    assert kinds(source.problems) == ["unparseable-labels"] and "FAT" in source.problems[0].message


def test_bad_manifests(tmp_path):
    (tmp_path / "m.csv").write_text("file,tags\na.png,1\n")
    with pytest.raises(HisynError, match="'path' and 'labels'"):
        open_source(tmp_path / "m.csv")
    (tmp_path / "m.jsonl").write_text("{not json\n")
    with pytest.raises(HisynError, match="m.jsonl:1"):
        open_source(tmp_path / "m.jsonl")
    (tmp_path / "latin1.csv").write_bytes("path,labels\nb\xe9b\xe9.png,1 0\n".encode("latin-1"))
    with pytest.raises(HisynError, match="latin1.csv: not a UTF-8 text manifest"):
        open_source(tmp_path / "latin1.csv")


def test_csv_manifest_with_semicolon_class_names_and_jsonl_vectors(tmp_path):
    for name in ("a", "b"):
        write_rgb(tmp_path / f"{name}.png", tissue_image(0))
    (tmp_path / "m.csv").write_text("path,labels\na.png,TUM;STR\n")
    assert [r.labels for r in open_source(tmp_path / "m.csv", dataset="bcss-wsss").train] == [(1, 1, 0, 0)]
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "b.png", "labels": [0, 0, 1, 0]}) + "\n")
    assert [r.labels for r in open_source(tmp_path / "m.jsonl", dataset="bcss-wsss").train] == [(0, 0, 1, 0)]


# --- background and pools ------------------------------------------------------------------

def test_background_drops_small_white_blobs():
    image = np.full((64, 64, 3), 120, np.uint8)
    image[:32, :32] = 250  # 1024 px of slide background
    image[50:55, 50:55] = 250  # 25 px bright speck inside tissue
    mask = background_mask(image, BackgroundParams(threshold=220, min_size=250))
    assert mask[:32, :32].all() and mask.sum() == 1024
    assert background_mask(image, BackgroundParams(min_size=0)).sum() == 1024 + 25


def test_pool_pack_matches_direct_decoding_and_is_cached(tmp_path):
    root = tmp_path / "d"
    write_benchmark(root, get_spec("luad-histoseg"), LUAD_LABELS, style="spaces", n_val=0, n_test=0)
    write_rgb(root / "train" / "white-[0 1 0 0].png", tissue_image(1, white_corner=20))
    broken = write_rgb(root / "train" / "broken-[0 0 0 1].png", tissue_image(3))
    broken.write_bytes(broken.read_bytes()[:50])
    source = open_source(root)
    pack, problems = build_pool_pack(source, cache_dir=tmp_path / "cache")
    assert kinds(problems) == ["unreadable"] and "broken" in problems[0].path
    assert pack.class_counts() == [1, 2, 0, 1]
    singles = {r.id: r for r in source.train if r.is_single_tissue}
    for i, entry in enumerate(pack.entries):
        assert np.array_equal(pack.image(i), read_rgb(singles[entry.id].path))
    white = next(i for i, e in enumerate(pack.entries) if "white" in e.id)
    assert pack.background(white)[:20, :20].all() and pack.background(white).sum() == 400
    again, problems_again = build_pool_pack(source, cache_dir=tmp_path / "cache")
    assert again.folder == pack.folder and kinds(problems_again) == ["unreadable"]
    assert len(list((tmp_path / "cache" / "pools").iterdir())) == 1


def test_pool_pack_without_single_tissue_images(tmp_path):
    write_benchmark(tmp_path, get_spec("luad-histoseg"), [(1, 1, 0, 0)], style="spaces", n_val=0, n_test=0)
    with pytest.raises(HisynError, match="no single-tissue"):
        build_pool_pack(open_source(tmp_path), cache_dir=tmp_path / "c")


# --- inspect -------------------------------------------------------------------------------

def test_inspect_reports_every_bad_input(tmp_path):
    spec = get_spec("luad-histoseg")
    write_benchmark(tmp_path, spec, LUAD_LABELS, style="spaces", n_val=3, n_test=1)
    train = tmp_path / "train"
    truncated = sorted(train.iterdir())[0]  # img000, the only TE image
    truncated.write_bytes(truncated.read_bytes()[:60])
    Image.fromarray(np.zeros((8, 8, 4), np.uint8), "RGBA").save(train / "rgba-[0 0 1 0].png")
    write_mask(tmp_path / "val" / "mask" / "val1.png", np.full((16, 16), 1, np.uint8))  # wrong size
    write_mask(tmp_path / "val" / "mask" / "val2.png", np.full((32, 32), 9, np.uint8))  # value 9 not in spec
    (tmp_path / "val" / "img" / "val0.png").write_bytes(b"\x89PNG garbage")  # an unreadable val image
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(train / "deep-[0 0 1 0].png")  # 16-bit grayscale
    Image.fromarray(np.full((8, 8), 90, np.uint8), "L").save(train / "gray-[0 0 1 0].png")
    Image.fromarray(np.zeros((8, 8), np.uint8), "P").save(train / "palette-[0 0 1 0].png")
    report = inspect_source(open_source(tmp_path), min_pool=2)
    counts = report["warning_counts"]
    assert counts["unreadable"] == 2 and counts["converted"] == 4
    converted = {Path(w["path"]).name: w["message"] for w in report["warnings"] if w["kind"] == "converted"}
    assert set(converted) == {"rgba-[0 0 1 0].png", "deep-[0 0 1 0].png", "gray-[0 0 1 0].png", "palette-[0 0 1 0].png"}
    assert any(w["kind"] == "unreadable" and w["path"].endswith("val0.png") for w in report["warnings"])
    assert counts["size-mismatch"] == 1 and counts["mask-values"] == 1
    by_kind = {w["kind"]: w for w in report["warnings"]}
    assert by_kind["size-mismatch"]["path"].endswith("val1.png") and "16x16" in by_kind["size-mismatch"]["message"]
    assert "[9]" in by_kind["mask-values"]["message"]
    assert report["usable_train"] == 8  # 5 written + RGBA, 16-bit, gray, palette - 1 truncated
    assert report["single_tissue"] == {"TE": 0, "NEC": 1, "LYM": 4, "TAS": 1}
    assert any(w["kind"] == "small-pool" and "TE" in w["message"] for w in report["warnings"])
    # fixture mask: rows 0-7 background (8x32), then left/right halves of 24 rows (24x16 each)
    assert report["mask_histogram"]["test"] == {"TE": 384, "NEC": 384, "background": 256}


def test_inspect_cli_json_and_one_line_errors(tmp_path):
    write_benchmark(tmp_path, get_spec("luad-histoseg"), LUAD_LABELS, style="spaces")
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path), "--json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["images"] == {"train": 5, "val": 2, "test": 2}
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path / "missing")])
    assert result.exit_code == 1 and result.output.strip().startswith("error:") and "Traceback" not in result.output


def test_cli_user_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hisyngen", "inspect", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "pass --dataset" in proc.stderr


# --- the real data shipped beside the project ------------------------------------------------

def test_real_bcss_wsss_mini(shared_data):
    report = inspect_source(open_source(shared_data / "bcss-wsss-mini"))
    assert report["images"] == {"train": 238, "val": 14, "test": 14}
    assert report["single_tissue"] == {"TUM": 7, "STR": 29, "LYM": 5, "NEC": 36}
    assert report["multi_tissue"] == 161
    assert set(report["mask_histogram"]["val"]) <= {"TUM", "STR", "LYM", "NEC", "background"}
    assert report["warning_counts"] == {"small-pool": 2}


def test_real_wsss4luad_mini(shared_data):
    report = inspect_source(open_source(shared_data / "wsss4luad-mini"))
    assert report["images"]["train"] == 4 and report["images"]["val"] == 31
    assert set(report["mask_histogram"]["val"]) == {"tumor", "stroma", "normal", "background"}
    assert "mask-values" not in report["warning_counts"] and "size-mismatch" not in report["warning_counts"]


def test_real_nct_tiles_are_a_single_label_source(shared_data):
    source = open_source(shared_data / "nct-crc-tiles")
    assert source.layout == "folder" and source.spec.num_classes == 9
    assert len(source.train) == 41 and all(r.is_single_tissue for r in source.train)

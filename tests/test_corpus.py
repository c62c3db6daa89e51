import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hisyngen.cli import cli
from hisyngen.corpus import Corpus, chunk_ranges, merge_corpora, synthesize
from hisyngen.errors import HisynError
from hisyngen.imageio import read_mask, read_rgb
from hisyngen.sources import open_source
from hisyngen.spec import get_spec
from hisyngen.synthesis import make_strategy

from fixtures import write_benchmark

LABELS = [(1, 0, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1), (0, 0, 0, 1), (1, 1, 0, 0)]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    write_benchmark(root, get_spec("bcss-wsss"), LABELS, style="run", n_val=0, n_test=0, size=48)
    return open_source(root)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_chunks_do_not_depend_on_the_range_start():
    assert chunk_ranges(range(0, 130), 64) == [(0, 64), (64, 128), (128, 130)]
    assert chunk_ranges(range(65, 130), 64) == [(65, 128), (128, 130)]


def test_same_seed_same_bytes_for_workers_and_shards(source, tmp_path):
    strategy = make_strategy("mosaic", {"size": 32})
    count = 150  # three chunks, one partial
    synthesize(source, strategy, tmp_path / "w1", count, seed=3, workers=1)
    synthesize(source, strategy, tmp_path / "w2", count, seed=3, workers=2)
    for i in range(2):
        synthesize(source, strategy, tmp_path / f"shard{i}", count, seed=3, workers=1, shard=(i, 2))
    merge_corpora([tmp_path / "shard1", tmp_path / "shard0"], tmp_path / "merged")
    reference = tree(tmp_path / "w1")
    assert len([k for k in reference if k.startswith("images/")]) == count
    assert tree(tmp_path / "w2") == reference
    assert tree(tmp_path / "merged") == reference
    other_seed = synthesize(source, strategy, tmp_path / "s4", count, seed=4, workers=1)
    assert other_seed.complete
    assert (tmp_path / "s4" / "images" / "mosaic-s4-000000.png").read_bytes() != reference["images/mosaic-s3-000000.png"]


def test_manifest_rows_describe_the_files(source, tmp_path):
    synthesize(source, make_strategy("bezier", {"size": 40}), tmp_path / "c", 20, seed=0)
    corpus = Corpus(tmp_path / "c")
    rows = list(corpus.rows())
    assert [r["index"] for r in rows] == list(range(20)) and len(corpus) == 20
    singles = {r.id for r in source.train if r.is_single_tissue}
    for row in rows:
        mask = read_mask(corpus.mask_path(row))
        assert read_rgb(corpus.image_path(row)).shape == (40, 40, 3)
        counts = np.bincount(mask.ravel(), minlength=256)
        assert row["labels"] == [int(counts[c] > 0) for c in range(4)]
        assert row["fractions"] == pytest.approx([counts[c] / mask.size for c in range(4)], abs=1e-6)
        assert sum(row["fractions"]) + row["ignore_fraction"] == pytest.approx(1.0, abs=1e-5)
        assert len(row["sources"]) == 2 and set(row["sources"]) <= singles
        assert row["geometry"]["pair"][0] != row["geometry"]["pair"][1]
    assert not (tmp_path / "c" / "parts").exists()


def test_resume_redoes_only_unfinished_chunks(source, tmp_path):
    strategy = make_strategy("gridded", {"size": 32})
    synthesize(source, strategy, tmp_path / "ref", 140, seed=1)
    out = tmp_path / "broken"
    synthesize(source, strategy, out, 140, seed=1)
    # Simulate an interruption: manifest not yet written, one chunk unfinished, a half-written file.
    rows = (out / "manifest.jsonl").read_text().splitlines()
    (out / "manifest.jsonl").unlink()
    (out / "parts").mkdir()
    (out / "parts" / "000000000-000000064.jsonl").write_text("\n".join(rows[:64]) + "\n")
    (out / "parts" / "000000128-000000140.jsonl").write_text("\n".join(rows[128:]) + "\n")
    (out / "images" / "gridded-s1-000070.png").write_bytes(b"half")
    (out / "images" / ".gridded-s1-000071.png.x.tmp").write_bytes(b"junk")
    summary = synthesize(source, strategy, out, 140, seed=1)
    assert summary.generated == 64 and summary.resumed == 76
    assert tree(out) == tree(tmp_path / "ref")
    again = synthesize(source, strategy, out, 140, seed=1)
    assert again.generated == 0 and again.resumed == 140


def test_kill_minus_9_then_resume_gives_identical_output(source, tmp_path):
    args = [sys.executable, "-m", "hisyngen", "synth", str(source.root), "-s", "mosaic", "-n", "700", "--size", "64",
            "-w", "1", "-q", "--seed", "2"]
    subprocess.run(args + ["-o", str(tmp_path / "ref")], check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(args + ["-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def some_chunk_done() -> bool:
        return (out / "parts").is_dir() and any((out / "parts").glob("*.jsonl"))

    deadline = time.time() + 60
    while not some_chunk_done() and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.jsonl").exists(), "the run finished before it could be killed"
    with pytest.raises(HisynError, match="incomplete"):
        list(Corpus(out).rows())  # an unfinished corpus lists nothing
    subprocess.run(args + ["-o", str(out)], check=True, capture_output=True)
    assert tree(out) == tree(tmp_path / "ref")


def test_small_pools_are_warned_about(source, tmp_path):
    summary = synthesize(source, make_strategy("onelabel", {"size": 32}), tmp_path / "c", 4, seed=0)
    # LABELS: TUM 2, STR 1, LYM 1, NEC 2 single-tissue sources, all under 10
    assert [w.split(" has ")[0] for w in summary.problems] == ["class TUM", "class STR", "class LYM", "class NEC"]
    assert "class STR has 1 single-tissue train images (< 10)" in summary.problems[1]


def test_folders_holding_something_else_are_refused(source, tmp_path):
    strategy = make_strategy("onelabel", {"size": 32})
    synthesize(source, strategy, tmp_path / "c", 10, seed=0)
    with pytest.raises(HisynError, match="holds a different corpus.*seed: 0 vs 1"):
        synthesize(source, strategy, tmp_path / "c", 10, seed=1)
    with pytest.raises(HisynError, match="holds a different corpus.*strategy"):
        synthesize(source, make_strategy("gridded", {"size": 32}), tmp_path / "c", 10, seed=0)
    with pytest.raises(HisynError, match=r"holds a different corpus.*params\.size: 32 vs 24"):  # the entry that differs
        synthesize(source, make_strategy("onelabel", {"size": 24}), tmp_path / "c", 10, seed=0)
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "notes.txt").write_text("mine")
    with pytest.raises(HisynError, match="not an empty folder or a hisyngen corpus"):
        synthesize(source, strategy, tmp_path / "random", 10)
    with pytest.raises(HisynError, match="count must be >= 1"):
        synthesize(source, strategy, tmp_path / "zero", 0)


def test_merge_refuses_incomplete_or_foreign_shard_sets(source, tmp_path):
    strategy = make_strategy("onelabel", {"size": 32})
    for i in range(3):
        synthesize(source, strategy, tmp_path / f"s{i}", 30, seed=0, shard=(i, 3))
    synthesize(source, strategy, tmp_path / "other", 30, seed=9, shard=(2, 3))
    with pytest.raises(HisynError, match="shards 1/3 are missing"):
        merge_corpora([tmp_path / "s0", tmp_path / "s2"], tmp_path / "m1")
    with pytest.raises(HisynError, match="shard of another corpus"):
        merge_corpora([tmp_path / "s0", tmp_path / "s1", tmp_path / "other"], tmp_path / "m2")
    with pytest.raises(HisynError, match="given twice"):
        merge_corpora([tmp_path / "s0", tmp_path / "s0", tmp_path / "s1"], tmp_path / "m3")
    result = merge_corpora([tmp_path / f"s{i}" for i in range(3)], tmp_path / "m")
    assert result["count"] == 30 and len(Corpus(tmp_path / "m")) == 30
    (tmp_path / "s1" / "images" / f"{next(Corpus(tmp_path / 's1').rows())['id']}.png").unlink()
    with pytest.raises(HisynError, match=r"onelabel-s0-000010\.png is missing from shard .*s1"):
        merge_corpora([tmp_path / f"s{i}" for i in range(3)], tmp_path / "m4")
    with pytest.raises(HisynError, match="--shard 3/5 of 2 samples holds none; use at most 2 shards"):
        synthesize(source, strategy, tmp_path / "empty", 2, seed=0, shard=(3, 5))


def test_cli_synth_preview_and_errors(source, tmp_path):
    runner = CliRunner()
    out = tmp_path / "c"
    result = runner.invoke(cli, ["synth", str(source.root), "-s", "bezier", "-n", "8", "-o", str(out), "--size", "64",
                                 "-w", "1", "-q", "-p", "points=6", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["generated"] == 8 and summary["complete"]
    assert Corpus(out).config.params["points"] == 6
    result = runner.invoke(cli, ["preview", str(out), "-o", str(tmp_path / "p.png"), "-n", "4", "--columns", "2"])
    assert result.exit_code == 0, result.output
    sheet = read_rgb(tmp_path / "p.png")
    assert sheet.shape[1] == 2 * (2 * 224 + 8)  # two cells of image + overlay
    for args, message in [
        (["-s", "bezier", "-p", "points=2"], "points must be an integer >= 3"),
        (["-s", "mosaic", "-p", "anchor=0.9,0.1"], "anchor range"),
        (["-s", "mosaic", "--shard", "3/2"], "need 0 <= i < n"),
        (["-s", "mosaic", "-p", "oops"], "KEY=VALUE"),
    ]:
        result = runner.invoke(cli, ["synth", str(source.root), "-o", str(tmp_path / "x"), "-q", *args])
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert not (tmp_path / "x").exists()  # nothing written for bad parameters


def test_real_bcss_mini_corpora(shared_data, tmp_path):
    source = open_source(shared_data / "bcss-wsss-mini")
    for name in ("mosaic", "bezier"):
        summary = synthesize(source, make_strategy(name), tmp_path / name, 40, seed=0, workers=1)
        assert summary.complete and len(Corpus(tmp_path / name)) == 40
        for row in Corpus(tmp_path / name).rows():
            assert set(np.unique(read_mask(tmp_path / name / "masks" / f"{row['id']}.png")).tolist()) <= {0, 1, 2, 3, 255}


def test_a_run_killed_right_after_its_corpus_json_resumes(source, tmp_path):
    strategy = make_strategy("onelabel", {"size": 32})
    synthesize(source, strategy, tmp_path / "ref", 10, seed=0)
    out = tmp_path / "c"
    out.mkdir()
    (out / "corpus.json").write_bytes((tmp_path / "ref" / "corpus.json").read_bytes())  # nothing else yet
    synthesize(source, strategy, out, 10, seed=0)
    assert tree(out) == tree(tmp_path / "ref")


def test_cli_user_errors_are_one_line(source, tmp_path):
    import subprocess
    import sys

    spec = tmp_path / "bad.yaml"
    spec.write_text("classes: [a, b]\npalette: [red, green]\n")
    cases = [
        (["synth", str(source.root), "-s", "mosaic", "-o", str(tmp_path / "x"), "-p", "anchor=0.3"], "anchor needs 2"),
        (["synth", str(source.root), "-s", "bezier", "-o", str(tmp_path / "x"), "-p", "pairs="], "pairs is empty"),
        (["filter-train", str(source.root), "-s", "mosaic", "-o", str(tmp_path / "d"), "--seed", "-1"], "seed must be >= 0"),
        (["filter-train", str(source.root), "-s", "mosaic", "-o", str(tmp_path / "d"), "--device", "tpu"], "not a device"),
        (["inspect", str(source.root), "--spec", str(spec)], "palette"),
    ]
    for args, message in cases:
        proc = subprocess.run([sys.executable, "-m", "hisyngen", *args], capture_output=True, text=True)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.startswith("error:") and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr

"""Issue 15: no secret leaves the machine, no path escapes its folder, two writers never share one.

Each test reproduces a defect of the audit (item numbers of the issue) and fails on the code before
the fix. Items 3, 10 and 11 (checkpoints, training without val masks, gloo teardown) are tested in
tests/mmseg/test_faults_training.py.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hisyngen.cli import cli
from hisyngen.corpus import Corpus, merge_corpora, synthesize
from hisyngen.errors import HisynError, ImageReadError
from hisyngen.export import export_dataset
from hisyngen.imageio import read_mask, read_rgb
from hisyngen.safety import OutputInUse, check_sample_id, output_lock, recorded_command, redact
from hisyngen.sources import open_source
from hisyngen.sources.inspect import inspect_source
from hisyngen.sources.pools import build_pool_pack
from hisyngen.spec import get_spec
from hisyngen.synthesis import make_strategy

from fake_hub import FakeHub
from fixtures import needs_openmmlab, tissue_image, write_benchmark, write_mask, write_rgb
from export_fixtures import make_corpora, make_source

TESTS = Path(__file__).resolve().parent
TOKEN = "hf_" + "QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUi"  # shaped like a real user access token (hf_ + 34)


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1, result.output
    return result.output


def png_header(width: int, height: int, colour_type: int = 2) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (pixels absent): a forged size costs nothing."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# --- 1. the Hub token is never written --------------------------------------------------------

def test_redaction_covers_both_option_forms_and_token_shaped_values():
    argv = ["build", "data", "--token", TOKEN, "--token=" + TOKEN, "-o", "/home/alice/builds/x", "--tag", TOKEN]
    recorded = recorded_command(argv)
    assert TOKEN not in recorded
    assert recorded == "hisyngen build data --token '***' '--token=***' -o x --tag '***'"
    assert "hf_export" in recorded_command(["export", "-o", "hf_export"])  # a folder name is not a token
    assert redact(f"bad --token {TOKEN} or --token=abc, env {TOKEN}") == "bad --token *** or --token=*** env ***"
    assert redact("rejected my-secret-value", ("my-secret-value",)) == "rejected ***"


@pytest.mark.slow
def test_a_pushed_build_writes_the_token_nowhere(tmp_path):
    labels = ([(1, 0, 0, 0)] * 3 + [(0, 1, 0, 0)] * 3 + [(0, 0, 1, 0)] * 3 + [(0, 0, 0, 1)] * 3 + [(1, 1, 0, 0)] * 4)
    source = write_benchmark(tmp_path / "src", get_spec("bcss-wsss"), labels, style="run", n_val=1, n_test=1, size=32)
    write_rgb(source / "training" / "img900-nolabels.png", tissue_image(0))  # skipped: one warning line (item 12)
    config = tmp_path / "tiny.yaml"
    config.write_text("count: 4\nfilter: false\nworkers: 1\nstrategies: [onelabel]\nsynthesis: {size: 32}\n"
                      "realism: {enabled: false}\nexport: {formats: [hf]}\n")
    hub = FakeHub(tokens={TOKEN: "user"}).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
        env.update(HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", OMP_NUM_THREADS="1",
                   HISYNGEN_CACHE=str(tmp_path / "cache"))
        out = tmp_path / "build"
        result = subprocess.run([sys.executable, "-m", "hisyngen", "build", str(source), "-o", str(out), "-c", str(config),
                                 "--push-to-hub", "user/tok", "--token", TOKEN],
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        uploaded = hub.repos[("user", "tok")].branches["main"].files
    finally:
        hub.stop()
    # shell-quoted as recorded_command writes it (a bare *** is a glob): the line stays copy-pasteable
    assert "Export command:" in uploaded["README.md"].decode() and "--token '***'" in uploaded["README.md"].decode()
    written = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert out / "summary.json" in written and out / "build.yaml" in written and written
    for where, data in [*written.items(), *uploaded.items(), ("stdout", result.stdout.encode()),
                        ("stderr", result.stderr.encode())]:
        assert TOKEN.encode() not in data, where
    assert ".lock" not in uploaded and ".hisyngen.json" not in uploaded  # local bookkeeping stays local
    assert str(tmp_path).encode() not in uploaded["README.md"]  # nor any local absolute path (item 5)
    warnings = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(warnings) == 1 and "img900-nolabels.png" in warnings[0] and "hisyngen inspect" in warnings[0]


# --- 2 and 6. sample ids ----------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["../../../victim", "a/b", "a\\b", "/etc/passwd", "..", ".hidden", "x\ny", "C:x", ""])
def test_sample_ids_that_are_not_one_file_name_are_refused(bad):
    with pytest.raises(HisynError, match="^f.txt:3: sample id .* is refused"):
        check_sample_id(bad, "f.txt:3")


def test_good_sample_ids_pass():
    for good in ("bezier-s0-000001", "img900+_0110_", "TUM_0001.v2", "a b"):
        assert check_sample_id(good, "x") == good


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    source = make_source(root / "src")
    corpora = make_corpora(source, root, count=3)
    return root, source, corpora


@needs_openmmlab
def test_pseudo_label_refuses_an_id_that_leaves_the_export(small, tmp_path):
    from hisyngen.mmseg.pseudo_label import pseudo_label

    root, source, corpora = small
    export = tmp_path / "e" / "f" / "mmseg"
    export_dataset(corpora, source, "mmseg", export)
    split = export / "splits" / "train_real.txt"
    split.write_text(split.read_text() + "../../../victim\n")
    lines = len(split.read_text().splitlines())
    with pytest.raises(HisynError, match=rf"train_real.txt:{lines}: sample id '../../../victim' is refused"):
        pseudo_label("no-config.py", "no-checkpoint.pth", export)
    real = export / "real.jsonl"
    real.write_text(real.read_text() + json.dumps({"id": "../../x", "labels": [1, 0, 0, 0], "source": "x"}) + "\n")
    with pytest.raises(HisynError, match=r"real.jsonl:\d+: sample id '../../x' is refused"):
        pseudo_label("no-config.py", "no-checkpoint.pth", export)
    assert not (tmp_path / "victim.png").exists() and not (tmp_path / "e" / "victim.png").exists()


def _rewrite_first_id(corpus: Path, new_id: str) -> None:
    manifest = corpus / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[0]["id"] = new_id
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_corpus_id_pointing_outside_is_never_exported_or_merged(small, tmp_path):
    root, source, corpora = small
    secret = tmp_path / "secret"
    write_rgb(secret / "x.png", tissue_image(2))  # what ../../secret/x reaches from tmp/<corpus>/images (and masks)
    corpus = tmp_path / "corpus"
    synthesize(source, make_strategy("onelabel", {"size": 32}), corpus, 3, seed=0)
    _rewrite_first_id(corpus, "../../secret/x")
    with pytest.raises(HisynError, match=r"manifest.jsonl:1: sample id '../../secret/x' is refused"):
        list(Corpus(corpus).rows())
    with pytest.raises(HisynError, match=r"manifest.jsonl:1: sample id"):
        export_dataset([corpus], source, "mmseg", tmp_path / "out")
    assert not (tmp_path / "out").exists()

    strategy = make_strategy("onelabel", {"size": 32})
    shards = [tmp_path / f"shard{i}" for i in range(2)]
    for i, shard in enumerate(shards):
        synthesize(source, strategy, shard, 4, seed=0, shard=(i, 2))
    _rewrite_first_id(shards[1], "../../secret/x")
    with pytest.raises(HisynError, match=r"shard1/manifest.jsonl:1: sample id"):
        merge_corpora(shards, tmp_path / "merged")


# --- 4. --overwrite replaces only hisyngen's folders ------------------------------------------

def test_overwrite_refuses_a_folder_without_the_marker(small, tmp_path):
    root, source, corpora = small
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "metainfo.json").write_text("{}")  # looks like an old-style MMSeg export
    (theirs / "thesis.tex").write_text("years of work")
    result = CliRunner().invoke(cli, ["export", str(corpora[0]), "--source", str(source.root), "-f", "mmseg",
                                      "-o", str(theirs), "--overwrite", "-q"])
    assert "is not a hisyngen export; refusing to replace it" in one_line_error(result)
    assert (theirs / "thesis.tex").read_text() == "years of work"
    ours = tmp_path / "ours"
    export_dataset(corpora, source, "mmseg", ours)
    marker = json.loads((ours / ".hisyngen.json").read_text())
    assert marker["format"] == "hisyngen-export-mmseg" and marker["version"] == 1
    export_dataset(corpora[:1], source, "hf", ours, overwrite=True)  # an export of ours: replaced
    assert json.loads((ours / ".hisyngen.json").read_text())["format"] == "hisyngen-export-hf"
    assert json.loads((corpora[0] / ".hisyngen.json").read_text())["format"] == "hisyngen-corpus"


# --- 5. paths outside the source root -----------------------------------------------------------

def test_manifest_rows_outside_the_root_are_refused_unless_allowed(tmp_path):
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    write_rgb(data / "a.png", tissue_image(0))
    write_rgb(data / "b.png", tissue_image(1, seed=1))
    write_rgb(elsewhere / "c.png", tissue_image(1, seed=2))
    manifest = data / "m.csv"
    manifest.write_text(f"path,labels\na.png,1 0\n{data / 'b.png'},0 1\n../elsewhere/c.png,0 1\n")
    with pytest.raises(HisynError, match=r"m.csv:4 path: '../elsewhere/c.png' is outside the source folder"):
        open_source(manifest)
    assert "--allow-outside-root" in one_line_error(CliRunner().invoke(cli, ["inspect", str(manifest), "-q"]))
    assert CliRunner().invoke(cli, ["inspect", str(manifest), "-q", "--allow-outside-root"]).exit_code == 0

    # Absolute and relative rows mixed (allowed): ids and exported paths are all relative to the root.
    source = open_source(manifest, allow_outside_root=True)
    assert [r.id for r in source.train] == ["a", "b", "../elsewhere/c"]
    for fmt in ("mmseg", "hf"):
        export_dataset([], source, fmt, tmp_path / fmt)
    real = [json.loads(line) for line in (tmp_path / "mmseg" / "real.jsonl").read_text().splitlines()]
    assert [r["source"] for r in real] == ["a.png", "b.png", "../elsewhere/c.png"]
    import pyarrow.parquet as pq

    table = pq.read_table(next((tmp_path / "hf" / "weak").glob("train-*.parquet")), columns=["sources"])
    assert table.column("sources").to_pylist() == [["a"], ["b"], ["../elsewhere/c"]]
    for path in (tmp_path / "mmseg").rglob("*.json*"):
        assert str(tmp_path) not in path.read_text(), path
    assert str(tmp_path) not in (tmp_path / "hf" / "README.md").read_text()


def test_an_absolute_row_inside_the_root_is_fine_and_a_mask_outside_is_refused(tmp_path):
    write_rgb(tmp_path / "d" / "v.png", tissue_image(0))
    write_mask(tmp_path / "m.png", np.zeros((32, 32), np.uint8))
    manifest = tmp_path / "d" / "m.jsonl"
    manifest.write_text(json.dumps({"path": str(tmp_path / "d" / "v.png"), "labels": [1, 0]}) + "\n"
                        + json.dumps({"path": "v.png", "split": "val", "mask": "../m.png"}) + "\n")
    with pytest.raises(HisynError, match=r"m.jsonl:2 mask: '../m.png' is outside"):
        open_source(manifest)


def test_spec_folders_outside_the_root_are_refused(tmp_path):
    write_benchmark(tmp_path / "x", get_spec("bcss-wsss"), [(1, 0, 0, 0)], style="run", n_val=0, n_test=0)
    spec = tmp_path / "root" / "spec.yaml"
    spec.parent.mkdir()
    spec.write_text("name: mine\nclasses: [TUM, STR, LYM, NEC]\nbackground_index: 4\n"
                    "split_dirs: {train: ['../x/training']}\n")
    with pytest.raises(HisynError, match=r"split_dirs.train: '../x/training' is outside the source folder"):
        open_source(tmp_path / "root", spec=spec)
    source = open_source(tmp_path / "root", spec=spec, allow_outside_root=True)
    assert len(source.train) == 1


# --- 7. the pixel cap ----------------------------------------------------------------------------

def test_huge_headers_are_unreadable_files_not_tracebacks(tmp_path):
    root = write_benchmark(tmp_path / "src", get_spec("bcss-wsss"), [(1, 0, 0, 0), (0, 1, 0, 0)], style="run",
                           n_val=1, n_test=0)
    (root / "training" / "huge+[1000].png").write_bytes(png_header(40000, 40000))  # cv2.error before the fix
    (root / "val" / "mask" / "val0.png").write_bytes(png_header(20000, 20000, colour_type=0))  # DecompressionBombError
    source = open_source(root)
    report = inspect_source(source)
    unreadable = {Path(w["path"]).name: w["message"] for w in report["warnings"] if w["kind"] == "unreadable"}
    assert set(unreadable) == {"huge+[1000].png", "val0.png"}
    assert all("megapixel cap" in message for message in unreadable.values())
    result = CliRunner().invoke(cli, ["inspect", str(root), "-q", "--quick"])
    assert result.exit_code == 0 and "huge+[1000].png" in result.output
    _, problems = build_pool_pack(source, cache_dir=tmp_path / "cache")
    assert [Path(p.path).name for p in problems] == ["huge+[1000].png"]


def test_the_pixel_cap_is_configurable(tmp_path, monkeypatch):
    image = write_rgb(tmp_path / "a.png", tissue_image(0, (40, 50)))
    mask = write_mask(tmp_path / "m.png", np.zeros((40, 50), np.uint8))
    assert read_rgb(image).shape == (40, 50, 3)
    monkeypatch.setenv("HISYNGEN_MAX_PIXELS", "1999")  # a valid 2,000-pixel image is now too big
    with pytest.raises(ImageReadError, match=r"a.png: image is 50x40 .* over the 0.001999 megapixel cap"):
        read_rgb(image)
    with pytest.raises(ImageReadError, match=r"m.png: image is 50x40"):
        read_mask(mask)
    monkeypatch.setenv("HISYNGEN_MAX_PIXELS", "lots")
    with pytest.raises(HisynError, match="HISYNGEN_MAX_PIXELS='lots' is not a positive number"):
        read_rgb(image)


# --- 8. one writer per output folder ----------------------------------------------------------

HOLD = """
import sys
from hisyngen.safety import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_second_run_into_a_locked_out_is_refused_and_a_dead_holder_does_not_block(small, tmp_path):
    root, source, corpora = small
    out = tmp_path / "corpus"
    strategy = make_strategy("onelabel", {"size": 32})
    synthesize(source, strategy, out, 3, seed=0)
    (out / "manifest.jsonl").unlink()
    leftover = out / "images" / ".other-run.png.tmp"  # the other run's temporary: must survive
    leftover.write_bytes(b"half")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputInUse, match=rf"{out} is in use by pid {holder.pid}"):
            synthesize(source, strategy, out, 3, seed=0)
        assert leftover.read_bytes() == b"half"
        result = CliRunner().invoke(cli, ["synth", str(source.root), "-s", "onelabel", "-n", "3", "--size", "32",
                                          "-o", str(out), "-q", "-w", "1"])
        assert f"in use by pid {holder.pid}" in one_line_error(result)
    finally:
        holder.kill()  # SIGKILL: no cleanup, the lock file stays behind
        holder.wait()
    assert (out / ".lock").is_file()
    synthesize(source, strategy, out, 3, seed=0)  # flock died with its holder
    assert Corpus(out).complete and not leftover.exists()


def test_export_build_filter_and_merge_take_the_lock(small, tmp_path):
    from hisyngen.filtering.filter import filter_corpus
    from hisyngen.build import DEFAULTS, Build, merge_config

    root, source, corpora = small
    out = tmp_path / "out"
    with output_lock(out):
        with pytest.raises(OutputInUse, match=f"in use by pid {os.getpid()}"):
            export_dataset(corpora, source, "mmseg", out)
        with pytest.raises(OutputInUse):
            filter_corpus(source, None, None, out, 1)  # refused before any argument is looked at
        with pytest.raises(OutputInUse):
            merge_corpora([corpora[0]], out)
        config = merge_config(DEFAULTS, {"strategies": ["onelabel"], "count": 4, "filter": False,
                                         "realism": {"enabled": False}, "workers": 1})
        with pytest.raises(OutputInUse):
            Build(source.root, out, config, log=lambda m: None).run()
    assert [p.name for p in out.iterdir()] == [".lock"]
    export_dataset(corpora, source, "mmseg", out)  # released: an export of the same folder works
    assert (out / ".lock").is_file() and (out / "metainfo.json").is_file()
    with pytest.raises(HisynError, match="--count must be >= 1"):  # the lock makes no folder a refusal keeps
        synthesize(source, make_strategy("onelabel", {"size": 32}), tmp_path / "a" / "b", 0)
    assert not (tmp_path / "a").exists()


def test_the_pool_cache_is_locked_while_it_is_built(small, tmp_path, monkeypatch):
    import hisyngen.sources.pools as pools
    from hisyngen.safety import file_lock

    root, source, corpora = small
    seen = []

    def read_and_probe(path):
        lock = next((tmp_path / "cache" / "locks").glob("*.lock"))
        try:
            with file_lock(lock, "probe"):
                seen.append("free")
        except OutputInUse:
            seen.append("held")
        return read_rgb(path)

    monkeypatch.setattr(pools, "read_rgb", read_and_probe)
    build_pool_pack(source, cache_dir=tmp_path / "cache")
    assert seen and set(seen) == {"held"}


# --- 9. a damaged pool cache is rebuilt -------------------------------------------------------

def test_a_truncated_pool_pack_is_rebuilt(small, tmp_path):
    root, source, corpora = small
    pack, _ = build_pool_pack(source, cache_dir=tmp_path / "cache")
    pixels = pack.folder / "pixels.u8"
    expected = [pack.image(i).copy() for i in range(len(pack))]
    del pack
    pixels.write_bytes(pixels.read_bytes()[:100])
    again, _ = build_pool_pack(source, cache_dir=tmp_path / "cache")  # was: mmap length is greater than file size
    assert all(np.array_equal(again.image(i), e) for i, e in enumerate(expected))
    # Same size, other bytes (a file rewritten in place): the sampled digest notices.
    data = bytearray(pixels.read_bytes())
    data[:16] = bytes(16)
    pixels.write_bytes(bytes(data))
    third, _ = build_pool_pack(source, cache_dir=tmp_path / "cache")
    assert np.array_equal(third.image(0), expected[0])
    synthesize(source, make_strategy("onelabel", {"size": 32}), tmp_path / "c", 2, cache_dir=tmp_path / "cache")


# --- 12. skipped source files: one warning line -----------------------------------------------

def test_synth_warns_once_about_skipped_source_files(tmp_path):
    root = write_benchmark(tmp_path / "src", get_spec("bcss-wsss"), [(1, 0, 0, 0), (0, 1, 0, 0)] * 2, style="run",
                           n_val=0, n_test=0)
    for i in range(5):
        (root / "training" / f"broken{i}+[1000].png").write_bytes(b"not a png")
    write_rgb(root / "training" / "nolabels.png", tissue_image(0))
    result = CliRunner().invoke(cli, ["synth", str(root), "-s", "onelabel", "-n", "2", "--size", "32",
                                      "-o", str(tmp_path / "c"), "-q", "-w", "1", "--allow-missing-classes",
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 1, result.output
    assert warnings[0].startswith("warning: skipped 6 source files (unparseable-name, unreadable): ")
    assert "and 3 more" in warnings[0] and warnings[0].endswith(f"`hisyngen inspect {root}` lists them all")
    assert not [line for line in result.output.splitlines() if line.startswith("warning: ") and "broken" in line
                and "skipped" not in line]

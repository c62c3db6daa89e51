import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from hisyngen.cli import cli
from hisyngen.corpus import Corpus
from hisyngen.errors import HisynError
from hisyngen.imageio import read_mask
from hisyngen.pipeline import DEFAULTS, Build, load_config, merge_config
from hisyngen.spec import get_spec

from fixtures import write_benchmark

pytestmark = pytest.mark.slow

LABELS = ([(1, 0, 0, 0)] * 4 + [(0, 1, 0, 0)] * 4 + [(0, 0, 1, 0)] * 3 + [(0, 0, 0, 1)] * 3
          + [(1, 1, 0, 0)] * 8 + [(0, 1, 1, 0)] * 6 + [(1, 0, 0, 1)] * 6)
# Small enough to run in seconds: 48 px images, 32 px discriminators, one epoch.
TINY = {
    "count": 6,
    "synthesis": {"size": 48},
    "discriminator": {"epochs": 1, "negatives": 16, "image_size": 32, "batch_size": 8},
    "realism": {"max_images": 16, "epochs": 1, "image_size": 32},
    "filter_batch_size": 4,
    "max_attempts": 400,
    "workers": 1,
}


@pytest.fixture(scope="module")
def source_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    return write_benchmark(root, get_spec("bcss-wsss"), LABELS, style="run", n_val=2, n_test=2, size=48)


def files(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not any(rel.startswith(s) or rel.endswith(s) for s in skip):
            out[rel] = path.read_bytes()
    return out


# Reports carry timings; everything else a build writes must be byte-identical between runs.
TIMED = (".stages/", "summary.json", "report.json", "realism.json", "cache/")


def test_build_end_to_end(source_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "build"
    summary = Build(source_root, out, load_config(None, TINY), log=lambda m: None, progress=False).run()

    assert set(summary["strategies"]) == {"mosaic", "bezier"} and summary["filtered"]
    for name, info in summary["strategies"].items():
        corpus = Corpus(out / "corpora" / name)
        rows = list(corpus.rows())
        assert len(rows) == info["kept"] == 6
        assert info["acceptance_rate"] == pytest.approx(6 / info["attempted"], abs=1e-6)
        assert corpus.config.filter["stats"]["attempted"] == info["attempted"]
        assert all(r["disc_score"] > 0.5 for r in rows)
        for row in rows:
            assert corpus.image_path(row).is_file()
            assert set(np.unique(read_mask(corpus.mask_path(row))).tolist()) <= {0, 1, 2, 3, 255}
        assert (out / "filters" / name / "model.pt").is_file()
        assert Path(info["preview"]).is_file()
        assert set(info["discriminator"]) >= {"accuracy", "f1", "roc_auc"} and "c2st_accuracy" in info["realism"]

    mmseg = out / "export" / "mmseg"
    counts = summary["exports"]["mmseg"]["counts"]
    assert counts == {"train": 12, "train_real": len(LABELS), "val": 2, "test": 2}
    for split, n in counts.items():
        assert len(list((mmseg / "img_dir" / split).glob("*.png"))) == n
    assert len((mmseg / "splits" / "train.txt").read_text().split()) == 12

    import datasets

    hf = datasets.load_dataset(str(out / "export" / "hf"))
    assert hf["train"].num_rows == 12 and hf["validation"].num_rows == 2
    assert summary["exports"]["hf"]["counts"] == counts
    assert "--data-root" in summary["train_command"] and str(mmseg.resolve()) in summary["train_command"]

    json_summary = json.loads((out / "summary.json").read_text())
    assert json_summary["strategies"]["bezier"]["kept"] == 6
    # a rerun finds everything done and changes nothing
    before = files(out, TIMED)
    again = Build(source_root, out, load_config(None, TINY), log=lambda m: None, progress=False).run()
    assert again["strategies"] == summary["strategies"] and files(out, TIMED) == before


def test_build_without_filter_and_one_strategy(source_root, tmp_path):
    config = load_config(None, {**TINY, "filter": False, "strategies": ["bezier"], "realism": {"enabled": False},
                                "export": {"formats": ["mmseg"]}})
    summary = Build(source_root, tmp_path / "b", config, log=lambda m: None, progress=False).run()
    assert summary["strategies"]["bezier"]["acceptance_rate"] == 1.0
    assert not (tmp_path / "b" / "filters").exists() and not (tmp_path / "b" / "export" / "hf").exists()
    assert Corpus(tmp_path / "b" / "corpora" / "bezier").config.filter is None


def _wait_for(condition, proc, timeout=120.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def test_kill_minus_9_and_resume_gives_identical_output(source_root, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "count": 24, "filter_batch_size": 2}))
    argv = [sys.executable, "-m", "hisyngen", "build", str(source_root), "--out", "build", "-c", str(config), "-q"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_DATASETS_OFFLINE="1")
    (tmp_path / "ref").mkdir()
    subprocess.run(argv, cwd=tmp_path / "ref", env=env, check=True, capture_output=True)

    work = tmp_path / "killed"
    work.mkdir()
    out = work / "build"
    kill_points = [
        ("while filtering", lambda: any((out / "corpora" / "mosaic" / "parts").glob("*.jsonl"))),
        ("while exporting", lambda: any((out / "export").glob(".hf.*"))),
    ]
    killed = []
    for label, condition in kill_points:
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if _wait_for(condition, proc):
            os.kill(proc.pid, signal.SIGKILL)
            killed.append(label)
        proc.wait()
    assert killed == [label for label, _ in kill_points], f"kill points reached: {killed}"
    subprocess.run(argv, cwd=work, env=env, check=True, capture_output=True)
    reference = files(tmp_path / "ref" / "build", TIMED)
    assert files(out, TIMED) == reference
    assert "export/hf/README.md" in reference and "filters/bezier/model.pt" in reference


def test_config_merging_and_errors(source_root, tmp_path):
    assert merge_config(DEFAULTS, {"discriminator": {"epochs": 2}})["discriminator"]["batch_size"] == 256
    with pytest.raises(HisynError, match="unknown setting 'epoch'"):
        merge_config(DEFAULTS, {"discriminator": {"epoch": 2}})
    with pytest.raises(HisynError, match="unknown setting 'strategy'"):
        load_config(None, {"strategy": "mosaic"})
    for bad, message in (({"count": "abc"}, "count: 'abc' is not valid"), ({"threshold": "x"}, "threshold"),
                         ({"filter": "yes"}, "filter"), ({"discriminator": {"epochs": 1.5}}, "epochs")):
        with pytest.raises(HisynError, match=message):
            load_config(None, bad)
    with pytest.raises(HisynError, match="count must be >= 1"):
        Build(source_root, tmp_path / "x", load_config(None, {"count": 0}), log=lambda m: None)
    bad = tmp_path / "bad.yaml"
    bad.write_text("count: [1, 2\n")
    with pytest.raises(HisynError, match="not valid YAML"):
        load_config(bad, {})
    with pytest.raises(HisynError, match="unknown strategy 'mosiac'"):
        Build(source_root, tmp_path / "x", load_config(None, {"strategies": ["mosiac"]}), log=lambda m: None)
    with pytest.raises(HisynError, match="push_to_hub needs the hf export"):
        Build(source_root, tmp_path / "x", load_config(None, {"push_to_hub": "a/b", "export": {"formats": ["mmseg"]}}),
              log=lambda m: None)
    assert not (tmp_path / "x").exists()


def test_rerun_with_other_settings_is_refused(source_root, tmp_path):
    config = load_config(None, {**TINY, "filter": False, "strategies": ["onelabel"], "realism": {"enabled": False},
                                "export": {"formats": ["mmseg"]}})
    Build(source_root, tmp_path / "b", config, log=lambda m: None, progress=False).run()
    other = merge_config(config, {"seed": 1})
    with pytest.raises(HisynError, match="other settings.*seed: 0 vs 1"):
        Build(source_root, tmp_path / "b", other, log=lambda m: None, progress=False).run()
    same_but_more_workers = merge_config(config, {"workers": 2})  # how it runs, not what it makes
    Build(source_root, tmp_path / "b", same_but_more_workers, log=lambda m: None, progress=False).run()


def test_print_config_round_trips():
    result = CliRunner().invoke(cli, ["build", "--print-config"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.output) == DEFAULTS


def test_an_empty_class_is_refused_before_anything_is_written(tmp_path):
    labels = [(1, 0, 0, 0)] * 3 + [(0, 1, 0, 0)] * 3 + [(1, 1, 0, 0)] * 6  # no LYM, no NEC single-tissue image
    root = write_benchmark(tmp_path / "src", get_spec("bcss-wsss"), labels, style="run", n_val=1, n_test=1, size=48)
    settings = {**TINY, "filter": False, "strategies": ["mosaic"], "realism": {"enabled": False},
                "export": {"formats": ["mmseg"]}}
    with pytest.raises(HisynError, match="class LYM, NEC has no single-tissue"):
        Build(root, tmp_path / "b", load_config(None, settings), log=lambda m: None, progress=False).run()
    assert not (tmp_path / "b").exists()
    # the setting the message names now works in the same folder
    allowed = merge_config(load_config(None, settings), {"synthesis": {"allow_missing_classes": True}})
    summary = Build(root, tmp_path / "b", allowed, log=lambda m: None, progress=False).run()
    assert summary["strategies"]["mosaic"]["kept"] == 6

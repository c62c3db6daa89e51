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
from hisyngen.extras import missing_openmmlab
from hisyngen.imageio import read_mask
from hisyngen.build import DEFAULTS, Build, load_config, merge_config
from hisyngen.spec import get_spec

from fixtures import TINY_BUILD, write_benchmark

LABELS = ([(1, 0, 0, 0)] * 4 + [(0, 1, 0, 0)] * 4 + [(0, 0, 1, 0)] * 3 + [(0, 0, 0, 1)] * 3
          + [(1, 1, 0, 0)] * 8 + [(0, 1, 1, 0)] * 6 + [(1, 0, 0, 1)] * 6)


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


def reports(folder: Path) -> dict[str, object]:
    """The JSON reports and stage markers of a build without their timings and with OUT for the
    build folder: what must match between an interrupted-and-resumed run and an uninterrupted one."""
    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if "seconds" not in k}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node.replace(str(folder.resolve()), "OUT") if isinstance(node, str) else node

    return {p.relative_to(folder).as_posix(): strip(json.loads(p.read_text())) for p in sorted(folder.rglob("*.json"))
            if not p.relative_to(folder).as_posix().startswith(("cache/", "export/"))}


def descendants(pid: int) -> set[int]:
    """Processes below ``pid`` (Linux /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.slow  # whole builds
def test_build_end_to_end(source_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "build"
    summary = Build(source_root, out, load_config(None, TINY_BUILD), log=lambda m: None, progress=False).run()

    assert set(summary["strategies"]) == {"mosaic", "bezier"} and summary["filtered"]
    for name, info in summary["strategies"].items():
        corpus = Corpus(out / "corpora" / name)
        rows = list(corpus.rows())
        assert len(rows) == info["kept"] == 6
        assert info["acceptance_rate"] == pytest.approx(6 / info["attempted"], abs=1e-6)
        assert corpus.config.filter["stats"]["attempted"] == info["attempted"] == 6 * 5  # rank: 5 x count scored
        assert corpus.config.filter["selection"] == {"mode": "rank", "stratify": True, "oversample": 5.0,
                                                     "match_area": True}
        assert sum(s["kept"] for s in info["strata"]) == 6 and len(info["class_mix"]["kept"]) == 4
        assert all(0 < r["disc_score"] < 1 and r["stratum"] for r in rows)
        for row in rows:
            assert corpus.image_path(row).is_file()
            assert set(np.unique(read_mask(corpus.mask_path(row))).tolist()) <= {0, 1, 2, 3, 255}
        assert (out / "filters" / name / "model.pt").is_file()
        assert Path(info["preview"]).is_file()
        assert set(info["discriminator"]) >= {"accuracy", "f1", "roc_auc"} and "c2st_accuracy" in info["realism"]

        # the summary's figures are those of the reports on disk
        report = json.loads((out / "filters" / name / "report.json").read_text())
        assert all(info["discriminator"][k] == report["heldout"][k] for k in ("accuracy", "f1", "roc_auc"))
        judged = next(r for r in json.loads((out / "realism.json").read_text())["corpora"] if r["strategy"] == name)
        assert info["realism"]["c2st_accuracy"] == judged["c2st_accuracy"]

    mmseg = out / "export" / "mmseg"
    counts = summary["exports"]["mmseg"]["counts"]
    assert counts == {"train": 12, "train_real": len(LABELS), "val": 2, "test": 2}
    for split, n in counts.items():
        assert len(list((mmseg / "img_dir" / split).glob("*.png"))) == n
        assert len((mmseg / "splits" / f"{split}.txt").read_text().split()) == n
        if split != "train_real":
            assert len(list((mmseg / "ann_dir" / split).glob("*.png"))) == n
    assert len((mmseg / "synthetic.jsonl").read_text().splitlines()) == 12
    assert len((mmseg / "real.jsonl").read_text().splitlines()) == len(LABELS)
    assert json.loads((mmseg / "metainfo.json").read_text())["classes"] == ["TUM", "STR", "LYM", "NEC"]
    if not missing_openmmlab():  # the plugin's datasets read the export (the rest needs no OpenMMLab)
        import hisyngen.mmseg  # noqa: F401  (compat + registration)
        from hisyngen.mmseg.datasets import HisynEvalDataset, HisynMixedDataset

        mixed = HisynMixedDataset(data_root=str(mmseg), pipeline=[])
        assert len(mixed) == 12 + len(LABELS) and sum(mixed.synthetic_flags()) == 12
        assert len(HisynEvalDataset(data_root=str(mmseg), split="test", pipeline=[])) == 2

    import datasets

    hf = {subset: datasets.load_dataset(str(out / "export" / "hf"), subset) for subset in ("default", "weak")}
    hf_counts = {"train": ("default", "train"), "train_real": ("weak", "train"), "val": ("default", "validation"),
                 "test": ("default", "test")}
    assert {split: hf[subset][name].num_rows for split, (subset, name) in hf_counts.items()} == counts
    assert summary["exports"]["hf"]["counts"] == counts
    assert "--data-root" in summary["train_command"] and str(mmseg.resolve()) in summary["train_command"]
    # the stock command is fitted to this export: 25 epochs x ceil(12 synthetic / 32 per step) iterations
    stock = summary["stock_train_command"]
    if missing_openmmlab():  # no mmengine to read the stock config with
        assert stock is None
    else:
        assert "train_cfg.max_iters=25 train_cfg.val_interval=1" in stock and stock.count(str(mmseg.resolve())) == 3

    json_summary = json.loads((out / "summary.json").read_text())
    assert json_summary["strategies"]["bezier"]["kept"] == 6
    # a rerun finds everything done and changes nothing
    before = files(out, TIMED)
    again = Build(source_root, out, load_config(None, TINY_BUILD), log=lambda m: None, progress=False).run()
    assert again["strategies"] == summary["strategies"] and files(out, TIMED) == before


@pytest.mark.slow  # whole builds
def test_build_without_filter_and_one_strategy(source_root, tmp_path):
    config = load_config(None, {**TINY_BUILD, "filter": False, "strategies": ["bezier"], "realism": {"enabled": False},
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
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


@pytest.mark.slow  # whole builds
def test_kill_minus_9_and_resume_gives_identical_output(source_root, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY_BUILD, "count": 24, "filter_batch_size": 2}))
    argv = [sys.executable, "-m", "hisyngen", "build", str(source_root), "--out", "build", "-c", str(config), "-q"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_DATASETS_OFFLINE="1")
    (tmp_path / "ref").mkdir()
    subprocess.run(argv, cwd=tmp_path / "ref", env=env, check=True, capture_output=True)

    work = tmp_path / "killed"
    work.mkdir()
    out = work / "build"
    kill_points = [
        ("while training a discriminator", lambda: (out / ".stages" / "inspect.json").is_file()),
        ("while filtering", lambda: any((out / "corpora" / "mosaic" / "scores").glob("*.jsonl"))),
        ("while exporting", lambda: any((out / "export").glob(".hf.*"))),
    ]
    killed, orphans = [], set()
    for label, condition in kill_points:
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if _wait_for(condition, proc):
            workers = descendants(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            killed.append(label)
            orphans |= workers
        proc.wait()
    assert killed == [label for label, _ in kill_points], f"kill points reached: {killed}"
    assert orphans  # the filter's generation worker was running at the second kill
    # generation workers of a killed build exit by themselves (else they could write into the rerun's folder)
    assert _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in orphans), None, timeout=10)
    finished_first = {p: p.stat().st_mtime_ns for p in (out / ".stages").glob("*.json")}
    assert out / ".stages" / "discriminator-mosaic.json" in finished_first
    subprocess.run(argv, cwd=work, env=env, check=True, capture_output=True)
    # the rerun resumed: stages finished before the last kill were not redone
    assert all(p.stat().st_mtime_ns == t for p, t in finished_first.items())
    reference = files(tmp_path / "ref" / "build", TIMED)
    assert files(out, TIMED) == reference
    assert reports(out) == reports(tmp_path / "ref" / "build")
    assert "export/hf/README.md" in reference and "filters/bezier/model.pt" in reference


def test_config_merging_and_errors(source_root, tmp_path):
    assert merge_config(DEFAULTS, {"discriminator": {"epochs": 2}})["discriminator"]["batch_size"] == 256
    assert merge_config(DEFAULTS, {"discriminator": {"lr": "1e-4"}})["discriminator"]["lr"] == 1e-4  # YAML 1.1
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
    # wrong types fail in the config, not deep inside a stage
    for bad, message in (({"seed": 1.5}, r"seed: 1\.5 is not valid; expected an integer"),
                         ({"synthesis": {"params": 5}}, "expected a mapping of strategy -> parameters"),
                         ({"synthesis": {"params": {"bezier": 5}}}, "expected a mapping of strategy -> parameters"),
                         ({"synthesis": {"params": {"bezir": {}}}}, r"unknown strategies \['bezir'\]"),
                         ({"threshold": None}, "threshold: needs a value"),
                         ({"discriminator": {"real_from": None}}, "real_from: needs a value")):
        with pytest.raises(HisynError, match=message):
            load_config(None, bad)
    # values a late stage would refuse are refused before the folder exists (its stored settings
    # would then refuse the corrected rerun)
    for bad, message in (({"threshold": 1.5}, r"threshold must be in \(0, 1\)"),
                         ({"discriminator": {"lr": -1.0}}, "learning rate must be > 0"),
                         ({"discriminator": {"real_from": "nowhere"}}, "real_from must be one of multi, all"),
                         ({"max_attempts": 3, "count": 5, "selection": "threshold"},
                          r"max_attempts \(3\) is smaller than count \(5\)"),
                         ({"max_attempts": 30}, "max_attempts applies to selection: threshold"),
                         ({"selection": "best"}, "selection must be one of rank, threshold"),
                         ({"oversample": 0.5}, "oversample must be >= 1"),
                         ({"workers": 0}, "workers must be >= 1"),
                         ({"count": 3}, "the realism report needs count >= 4")):
        with pytest.raises(HisynError, match=message):
            Build(source_root, tmp_path / "x", load_config(None, {**TINY_BUILD, **bad}), log=lambda m: None).run()
    assert not (tmp_path / "x").exists()


@pytest.mark.slow  # whole builds
def test_rerun_with_other_settings_is_refused(source_root, tmp_path):
    config = load_config(None, {**TINY_BUILD, "filter": False, "strategies": ["onelabel"], "realism": {"enabled": False},
                                "export": {"formats": ["mmseg"]}})
    Build(source_root, tmp_path / "b", config, log=lambda m: None, progress=False).run()
    other = merge_config(config, {"seed": 1})
    with pytest.raises(HisynError, match="other settings.*seed: 0 vs 1"):
        Build(source_root, tmp_path / "b", other, log=lambda m: None, progress=False).run()
    same_but_more_workers = merge_config(config, {"workers": 2})  # how it runs, not what it makes
    Build(source_root, tmp_path / "b", same_but_more_workers, log=lambda m: None, progress=False).run()


def test_a_finished_build_pushes_again_to_a_new_target(source_root, tmp_path, monkeypatch):
    import hisyngen.export.push as push

    pushed = []
    monkeypatch.setattr(push, "push_export", lambda folder, repo, **kw: pushed.append((repo, kw)) or f"url/{repo}")
    config = load_config(None, {**TINY_BUILD, "filter": False, "strategies": ["onelabel"], "realism": {"enabled": False},
                                "export": {"formats": ["hf"]}, "push_to_hub": "me/one"})
    for repo in ("me/one", "me/one", "me/two"):
        summary = Build(source_root, tmp_path / "b", merge_config(config, {"push_to_hub": repo}), log=lambda m: None,
                        progress=False).run()
        assert summary["push"]["url"] == f"url/{repo}"
    assert [repo for repo, _ in pushed] == ["me/one", "me/two"]  # the same target is not pushed twice


def test_print_config_round_trips(tmp_path):
    result = CliRunner().invoke(cli, ["build", "--print-config"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.output) == DEFAULTS
    assert "count: null  # kept samples per strategy" in result.output  # commented
    # with a config file and options: what that build would run with
    (tmp_path / "b.yaml").write_text("count: 9\ndiscriminator: {epochs: 2}\n")
    result = CliRunner().invoke(cli, ["build", "--print-config", "-c", str(tmp_path / "b.yaml"), "--no-filter"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.output) == merge_config(DEFAULTS, {"count": 9, "filter": False,
                                                                    "discriminator": {"epochs": 2}})
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 2 and "SOURCE and --out are required" in result.output


def test_an_empty_class_is_refused_before_anything_is_written(tmp_path):
    labels = [(1, 0, 0, 0)] * 3 + [(0, 1, 0, 0)] * 3 + [(1, 1, 0, 0)] * 6  # no LYM, no NEC single-tissue image
    root = write_benchmark(tmp_path / "src", get_spec("bcss-wsss"), labels, style="run", n_val=1, n_test=1, size=48)
    settings = {**TINY_BUILD, "filter": False, "strategies": ["mosaic"], "realism": {"enabled": False},
                "export": {"formats": ["mmseg"]}}
    with pytest.raises(HisynError, match="class LYM, NEC has no single-tissue"):
        Build(root, tmp_path / "b", load_config(None, settings), log=lambda m: None, progress=False).run()
    assert not (tmp_path / "b").exists()
    # the setting the message names now works in the same folder
    allowed = merge_config(load_config(None, settings), {"synthesis": {"allow_missing_classes": True}})
    summary = Build(root, tmp_path / "b", allowed, log=lambda m: None, progress=False).run()
    assert summary["strategies"]["mosaic"]["kept"] == 6


def test_build_paper_preset_is_the_papers_filter():
    from click.testing import CliRunner

    from hisyngen.cli import cli

    result = CliRunner().invoke(cli, ["build", "--paper", "--print-config"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(result.output)
    assert (config["selection"], config["stratify"], config["threshold"]) == ("threshold", False, 0.5)
    assert config["discriminator"]["match_classes"] is False and config["discriminator"]["batch_size"] == 256
    default = yaml.safe_load(CliRunner().invoke(cli, ["build", "--print-config"]).output)
    assert (default["selection"], default["stratify"], default["discriminator"]["match_classes"]) == ("rank", True, True)
    clash = CliRunner().invoke(cli, ["build", "--paper", "--selection", "rank", "--print-config"])
    assert clash.exit_code != 0 and "--paper is threshold selection without quotas" in clash.output

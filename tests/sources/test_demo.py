import sys

import numpy as np
import pytest

from hisyngen.demo_training import clear_checkpoints
from hisyngen.sources.demo import DemoSize, compose, present_classes, write_demo_source
from hisyngen.errors import HisynError
from hisyngen.imageio import read_mask, read_rgb
from hisyngen.sources import open_source

from fixtures import TINY_BUILD, needs_openmmlab


def test_demo_source_reads_as_bcss_wsss_with_every_class(tmp_path):
    root = write_demo_source(tmp_path / "demo", seed=1, sizes=DemoSize(single_per_class=3, multi=6, val=2, test=2, size=96))
    assert (root / "DEMO_DATA.txt").read_text().startswith("DEMO DATA - NOT REAL TISSUE")
    source = open_source(root)
    assert source.spec.name == "bcss-wsss" and source.problems == []
    assert {c: len(v) for c, v in source.single_tissue_pools().items()} == {0: 3, 1: 3, 2: 3, 3: 3}
    assert len(source.multi_tissue()) == 6 and len(source.val) == 2 and len(source.test) == 2
    assert all(p.name.startswith("DEMO-") for p in (root / "training").iterdir())
    for record in source.val + source.test:
        mask = read_mask(record.mask_path)
        assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3, 4}
        assert mask.shape == read_rgb(record.path).shape[:2]
    before = sorted(p.read_bytes() for p in (root / "training").iterdir())
    write_demo_source(root, seed=1)  # already there: untouched
    assert sorted(p.read_bytes() for p in (root / "training").iterdir()) == before


def test_demo_labels_match_the_drawn_regions():
    rng = np.random.default_rng(0)
    image, mask = compose([0, 2], rng, size=64, white=True)
    assert image.shape == (64, 64, 3) and set(np.unique(mask).tolist()) <= {0, 2, 4}
    assert (image[mask == 4] > 230).all()  # background is white
    labels = present_classes(mask)
    assert labels[1] == labels[3] == 0 and labels == tuple(int((mask == c).mean() >= 0.02) for c in range(4))


def test_demo_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(HisynError, match="not a hisyngen demo source"):
        write_demo_source(tmp_path)


def test_demo_train_without_mmsegmentation_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    import hisyngen.extras
    from click.testing import CliRunner

    from hisyngen.cli import cli

    monkeypatch.setattr(hisyngen.extras, "missing_openmmlab", lambda: ["mmseg", "mmengine"])
    result = CliRunner().invoke(cli, ["demo", "--train", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("error: hisyngen demo --train needs MMSegmentation") and "hisyngen[mmseg" in result.output
    assert not (tmp_path / "demo").exists()  # refused before minutes of building


@needs_openmmlab
def test_the_evaluated_checkpoint_is_the_last_run_s_not_the_longest(tmp_path):
    from hisyngen.mmseg.evaluate import final_checkpoint

    for name in ("iter_50.pth", "iter_2.pth"):  # a 50-step run, then a 2-step one in the same work dir
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_2.pth"))  # as mmengine writes it
    assert final_checkpoint(tmp_path) == tmp_path / "iter_2.pth"
    (tmp_path / "last_checkpoint").write_text("/elsewhere/iter_2.pth")  # read as a name in the work dir
    assert final_checkpoint(tmp_path) == tmp_path / "iter_2.pth"
    (tmp_path / "last_checkpoint").unlink()
    assert final_checkpoint(tmp_path) == tmp_path / "iter_50.pth"


@needs_openmmlab
def test_evaluations_log_through_one_mmlogger_to_stderr(capsys):
    from mmengine.logging import MMLogger

    from hisyngen.mmseg.evaluate import stderr_logger

    first = stderr_logger()
    MMLogger.get_instance("someone-else")
    second = stderr_logger()
    assert second is first and MMLogger.get_current_instance() is first  # the newest again, not a new one
    assert sum(name.startswith("hisyngen-evaluate") for name in MMLogger._instance_dict) == 1
    second.warning("loads checkpoint")
    captured = capsys.readouterr()
    assert "loads checkpoint" in captured.err and "loads checkpoint" not in captured.out


@needs_openmmlab
def test_the_evaluation_logger_survives_a_closed_earlier_stderr(monkeypatch, capsys):
    import io

    from hisyngen.mmseg.evaluate import stderr_logger

    earlier = io.TextIOWrapper(io.BytesIO())  # an earlier command's (or test's) stderr, closed since
    monkeypatch.setattr(sys, "stderr", earlier)
    stderr_logger()
    earlier.close()
    monkeypatch.undo()
    stderr_logger().warning("after a closed stream")  # setStream flushed the closed one: ValueError
    assert "after a closed stream" in capsys.readouterr().err


def test_a_retraining_clears_older_checkpoints_only_in_the_demo_s_folder(tmp_path):
    demo, elsewhere = tmp_path / "demo", tmp_path / "mine"
    for work in (demo / "build" / "train" / "cfg", elsewhere):
        work.mkdir(parents=True)
        for name in ("iter_50.pth", "last_checkpoint", "train.log"):
            (work / name).write_text("x")
    clear_checkpoints(demo / "build" / "train" / "cfg", demo)
    assert sorted(p.name for p in (demo / "build" / "train" / "cfg").iterdir()) == ["train.log"]
    clear_checkpoints(elsewhere, demo)
    assert len(list(elsewhere.iterdir())) == 3


def test_a_demo_source_is_reused_only_for_its_own_seed(tmp_path):
    sizes = DemoSize(single_per_class=1, multi=1, val=1, test=1, size=48)
    write_demo_source(tmp_path, seed=3, sizes=sizes)
    assert write_demo_source(tmp_path, seed=3, sizes=sizes) == tmp_path
    with pytest.raises(HisynError, match=rf"^{tmp_path} holds the demo source of seed 3, not seed 0: use another"):
        write_demo_source(tmp_path, seed=0, sizes=sizes)


def test_the_printed_train_hint_keeps_a_non_default_seed(tmp_path, monkeypatch, capsys):
    import importlib

    import hisyngen.sources.demo

    cli_build = importlib.import_module("hisyngen.cli.build")  # the attribute hisyngen.cli.build is the command
    monkeypatch.setattr(hisyngen.sources.demo, "write_demo_source", lambda root, seed, sizes: root)
    monkeypatch.setattr(cli_build, "run_build", lambda *args, **kwargs: {"strategies": {}})
    for seed, hint in ((3, f"hisyngen demo --out {tmp_path} --seed 3 --train"),
                       (0, f"hisyngen demo --out {tmp_path} --train")):
        cli_build.run_demo(tmp_path, seed=seed)
        assert f"train and evaluate the CPU trial here: {hint}" in capsys.readouterr().out


def test_demo_json_carries_an_undefined_iou_as_null(tmp_path, monkeypatch, capsys):
    import importlib
    import json

    import hisyngen.demo_training
    import hisyngen.extras
    import hisyngen.sources.demo

    cli_build = importlib.import_module("hisyngen.cli.build")
    monkeypatch.setattr(hisyngen.extras, "require_openmmlab", lambda what: None)
    monkeypatch.setattr(hisyngen.sources.demo, "write_demo_source", lambda root, seed, sizes: root)
    monkeypatch.setattr(cli_build, "run_build", lambda *args, **kwargs: {"strategies": {}})
    # NEC in neither the ground truth nor the prediction of the test masks: its IoU is 0/0
    scores = {"mIoU": 50.0, "IoU": {"TUM": 50.0, "NEC": float("nan")}}
    monkeypatch.setattr(hisyngen.demo_training, "train_demo", lambda *args, **kwargs: scores)
    cli_build.run_demo(tmp_path, train=True, as_json=True)

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    printed = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert printed["train"]["IoU"] == {"TUM": 50.0, "NEC": None}


# The tiny demo of the slow test: small images, and the build settings of tests/build/test_build.py.
TINY_DEMO = DemoSize(single_per_class=3, multi=6, val=2, test=2, size=96)
# The one change to the printed command: 2 steps instead of its CPU_TRIAL_ITERATIONS, so the test stays
# within ~3 minutes on a loaded 2-core CI box (mmengine lets this last --cfg-options value win).
FEWER_STEPS = ("--cfg-options", "train_cfg.max_iters=2")


@pytest.mark.slow
def test_the_printed_cpu_command_and_demo_train_run_to_the_end(tmp_path, capsys):
    import json
    import re
    import shlex
    import subprocess
    import sys

    pytest.importorskip("mmseg")
    from hisyngen.cli.build import run_demo
    from hisyngen.train_plan import CPU_TRIAL_CONFIG

    out = tmp_path / "demo"
    summary = run_demo(out, seed=0, workers=1, sizes=TINY_DEMO, settings=TINY_BUILD)
    printed = capsys.readouterr().out
    command = next(line.strip() for line in printed.splitlines()
                   if line.strip().startswith(f"hisyngen train {CPU_TRIAL_CONFIG} "))
    assert summary["train_commands"][0]["command"] == command  # the JSON summary carries the same
    assert f"hisyngen demo --out {out} --train" in printed

    # the printed command, run as a user runs it, to the end
    work = tmp_path / "demo" / "build" / "train" / CPU_TRIAL_CONFIG
    done = subprocess.run([sys.executable, "-m", "hisyngen", *shlex.split(command)[1:], *FEWER_STEPS],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert (work / "iter_2.pth").is_file()

    # demo --train: the build is resumed (all done), the same command trains, the test masks evaluate
    trained = run_demo(out, seed=0, workers=1, sizes=TINY_DEMO, settings=TINY_BUILD, train=True,
                       train_args=FEWER_STEPS)["train"]
    captured = capsys.readouterr()
    assert "already done" in captured.err and "[1/" in captured.err
    assert trained["command"] == shlex.join([*shlex.split(command), *FEWER_STEPS]) and not trained["reused"]
    match = re.search(r"test mIoU (\d+\.\d\d), fwIoU (\d+\.\d\d) on the 2 demo test masks", captured.out)
    assert match and float(match[1]) == trained["mIoU"] and float(match[2]) == trained["fwIoU"]
    assert 0 <= trained["mIoU"] <= 100 and trained["pixels"] > 0 and set(trained["IoU"]) == {"TUM", "STR", "LYM", "NEC"}
    sheet = read_rgb(out / "prediction.png")
    assert sheet.shape[1] == 3 * TINY_DEMO.size and sheet.shape[0] > 2 * TINY_DEMO.size  # 2 rows + title + legend
    assert f"prediction overlay (image | ground truth | prediction): {out / 'prediction.png'}" in captured.out

    # a rerun reuses the finished training; --json carries the same figures
    again = run_demo(out, seed=0, workers=1, sizes=TINY_DEMO, settings=TINY_BUILD, train=True,
                     train_args=FEWER_STEPS, as_json=True)
    reported = json.loads(capsys.readouterr().out)
    assert reported["train"]["reused"] and reported["train"]["mIoU"] == trained["mIoU"] == again["train"]["mIoU"]
    assert reported["train_commands"] == summary["train_commands"]

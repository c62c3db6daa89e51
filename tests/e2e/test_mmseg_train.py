"""End to end through MMSegmentation's UNMODIFIED stock tools/train.py and tools/test.py.

The smoke config (ResNet-18, 64 px crops, 2 synthetic + 2 real per step) trains a few iterations on
the tiny export with validation, resumes from its checkpoint, is tested (plain and with TTA), runs
as 2 gloo processes on CPU, and goes through pseudo-labelling and a stage-2 run.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hisyngen.mmseg_launch import data_root_options, mmseg_config_path, stock_tool
from hisyngen.imageio import read_mask, read_rgb
from mmseg_fixtures import mmseg_export  # noqa: F401  (pytest fixture)

pytestmark = pytest.mark.slow
SMOKE = str(mmseg_config_path("smoke"))
# mmseg's IoUMetric keys (the configs ask for mIoU and mDice), then fwIoU (hisyngen/mmseg/metrics.py)
METRIC_LINE = re.compile(r"aAcc: \d+\.\d+\s+mIoU: (\d+\.\d+)\s+mAcc: \d+\.\d+\s+mDice: (\d+\.\d+)\s+fwIoU: (\d+\.\d+)")


def export_facts(export):
    """What the tests may expect, read from the export itself (any export in docs/formats.md layout)."""
    meta = json.loads((export / "metainfo.json").read_text())
    real = [json.loads(line) for line in (export / "real.jsonl").read_text().splitlines() if line.strip()]
    tests = [line for line in (export / "splits" / "test.txt").read_text().splitlines() if line.strip()]
    return meta["classes"], {r["id"]: r["labels"] for r in real}, len(tests)


def options(export):
    """--cfg-options values pointing the smoke config at ``export`` (class count from its metainfo)."""
    classes, _, _ = export_facts(export)
    return [*data_root_options(export), f"model.decode_head.num_classes={len(classes)}"]


def run(argv, cwd, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def run_cli(args, cwd):
    """``hisyngen <args>`` in a fresh process."""
    return run([sys.executable, "-m", "hisyngen", *args], cwd)


@pytest.fixture(scope="module")
def trained(mmseg_export, tmp_path_factory):
    """Work dir of 4 smoke iterations (validation and checkpoints at 2 and 4)."""
    work = tmp_path_factory.mktemp("smoke-run")
    out = run([sys.executable, str(stock_tool("train")), SMOKE, "--work-dir", str(work / "wd"),
               "--cfg-options", *options(mmseg_export)], cwd=work)
    return work / "wd", out


def test_stock_train_validates_and_saves_best(trained, mmseg_export):
    wd, out = trained
    classes, _, _ = export_facts(mmseg_export)
    assert "decode.loss_seg" in out and "decode.loss_cls" in out and "decode.loss_reg" in out
    assert len(METRIC_LINE.findall(out)) == 2  # validation at iterations 2 and 4
    assert all(f"IoU.{name}:" in out and f"Dice.{name}:" in out for name in classes)
    assert (wd / "iter_4.pth").is_file() and list(wd.glob("best_mIoU_iter_*.pth"))


def test_stock_resume_and_test(trained, mmseg_export):
    wd, _ = trained
    resume_dir = wd.parent / "resumed"
    shutil.copytree(wd, resume_dir)
    out = run([sys.executable, str(stock_tool("train")), SMOKE, "--work-dir", str(resume_dir), "--resume",
               "--cfg-options", *options(mmseg_export), "train_cfg.max_iters=6"], cwd=wd.parent)
    assert "resumed epoch: 0, iter: 4" in out and "Iter(train) [6/6]" in out
    assert "Iter(train) [1/6]" not in out  # really resumed, not restarted
    assert (resume_dir / "iter_6.pth").is_file()

    out = run([sys.executable, str(stock_tool("test")), SMOKE, str(resume_dir / "iter_6.pth"),
               "--work-dir", str(resume_dir), "--cfg-options", *options(mmseg_export)], cwd=wd.parent)
    (miou, mdice, fwiou), = METRIC_LINE.findall(out)
    assert all(0 <= float(value) <= 100 for value in (miou, mdice, fwiou))
    _, _, num_test = export_facts(mmseg_export)
    assert f"Iter(test) [{num_test}/{num_test}]" in out


def test_cli_test_with_tta(trained, mmseg_export):
    wd, _ = trained
    classes, _, _ = export_facts(mmseg_export)
    out = run_cli(["test", "smoke", str(wd / "iter_4.pth"), "--data-root", str(mmseg_export), "--tta",
                   "--work-dir", str(wd.parent / "tta"), "--cfg-options", f"model.decode_head.num_classes={len(classes)}"],
                  cwd=wd.parent)
    assert len(METRIC_LINE.findall(out)) == 1


def test_cli_train_runs_the_stock_script_and_the_users_options_win(mmseg_export, tmp_path):
    # the head's class count comes from the export; the user's max_iters beats the config's 4
    out = run_cli(["train", "smoke", "--data-root", str(mmseg_export), "--work-dir", str(tmp_path / "wd"),
                   "--cfg-options", "train_cfg.max_iters=2", "train_cfg.val_interval=2"], cwd=tmp_path)
    assert "Iter(train) [2/2]" in out and len(METRIC_LINE.findall(out)) == 1
    assert (tmp_path / "wd" / "iter_2.pth").is_file()


def test_two_process_gloo_training(mmseg_export, tmp_path):
    out = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(stock_tool("train")), SMOKE, "--launcher", "pytorch", "--work-dir", str(tmp_path / "wd"),
               "--cfg-options", *options(mmseg_export)], cwd=tmp_path)
    assert "Distributed training: True" in out
    assert "Iter(train) [4/4]" in out and len(METRIC_LINE.findall(out)) == 2
    assert (tmp_path / "wd" / "iter_4.pth").is_file()


def test_pseudo_label_then_stage2(trained, mmseg_export, tmp_path):
    wd, _ = trained
    export = shutil.copytree(mmseg_export, tmp_path / "export")
    classes, labels, _ = export_facts(export)
    out = run_cli(["pseudo-label", str(wd / "smoke_deeplabv3plus_r18.py"), str(wd / "iter_4.pth"),
                   "--source", str(export), "-q"], cwd=tmp_path)
    single = sum(sum(v) == 1 for v in labels.values())
    multi = sum(sum(v) > 1 for v in labels.values())
    assert f"wrote {len(labels)} pseudo masks" in out and f"{single} single-label, {multi} predicted" in out
    for sample_id, vector in labels.items():
        mask = read_mask(export / "ann_dir" / "train_real" / f"{sample_id}.png")
        assert mask.shape == read_rgb(export / "img_dir" / "train_real" / f"{sample_id}.png").shape[:2]
        allowed = {c for c, v in enumerate(vector) if v} | {255}
        assert set(np.unique(mask).tolist()) <= allowed  # absent classes never appear
        if sum(vector) == 1:
            assert (mask != 255).any()  # the class everywhere except white background

    stage2 = ["model.decode_head.loss_reg=None", "model.decode_head.seg_on_real=True",
              "train_dataloader.dataset.real_masks=pseudo", "train_cfg.max_iters=2", "train_cfg.val_interval=10"]
    out = run([sys.executable, str(stock_tool("train")), SMOKE, "--work-dir", str(tmp_path / "wd2"),
               "--cfg-options", *options(export), *stage2], cwd=tmp_path)
    assert "Iter(train) [2/2]" in out and "decode.loss_seg" in out and "decode.loss_reg" not in out

"""Issue 15 items 3, 10, 11 and issue 21 item 1: checkpoints, exports without val masks, gloo
teardown, pretrained downloads. Each test fails on the code before the fix."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import hisyngen.mmseg  # noqa: F401  (applies compat, registers)
from hisyngen.errors import HisynError
from hisyngen.mmseg import compat
from mmseg_fixtures import tiny_export  # noqa: F401  (pytest fixture)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo PWNED > pwned.txt",))


def _mmengine_like_checkpoint(path):
    """What mmengine's Runner saves: meta, state_dict, message_hub with HistoryBuffers, optimizer."""
    from mmengine.logging import HistoryBuffer

    buffer = HistoryBuffer()
    for v in (1e-4, 0.5):
        buffer.update(v)
    hub = {"log_scalars": {"train/lr": buffer}, "runtime_info": {"iter": 4, "eta": np.float64(1.0),
                                                                  "dtype": np.dtype("f8")}}
    torch.save({"meta": {"iter": 4, "cfg": "x = 1", "dataset_meta": {"classes": ("a", "b")}},
                "state_dict": {"w": torch.ones(2)}, "message_hub": hub,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}}, path)


def test_mmengine_checkpoint_loads_without_trust(tmp_path, monkeypatch):
    from mmengine.runner.checkpoint import CheckpointLoader

    monkeypatch.delenv("HISYNGEN_TRUST_CHECKPOINTS", raising=False)
    _mmengine_like_checkpoint(tmp_path / "c.pth")
    loaded = CheckpointLoader.load_checkpoint(str(tmp_path / "c.pth"), map_location="cpu")
    assert loaded["message_hub"]["log_scalars"]["train/lr"].mean() == pytest.approx((1e-4 + 0.5) / 2)


def test_untrusted_checkpoint_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    from mmengine.runner.checkpoint import CheckpointLoader

    monkeypatch.delenv("HISYNGEN_TRUST_CHECKPOINTS", raising=False)
    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": {}, "x": _RunsCode()}, tmp_path / "evil.pth")
    with pytest.raises(compat.UntrustedCheckpointError) as info:
        CheckpointLoader.load_checkpoint(str(tmp_path / "evil.pth"))
    message = str(info.value)
    assert "\n" not in message and "--trust-checkpoint" in message and "HISYNGEN_TRUST_CHECKPOINTS=1" in message
    assert not (tmp_path / "pwned.txt").exists()


def test_getattr_only_reaches_history_buffer_statistics():
    import pickle

    from mmengine.logging import HistoryBuffer

    assert compat._history_buffer_getattr(HistoryBuffer, "mean") is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError):
        compat._history_buffer_getattr(HistoryBuffer, "__init__")
    with pytest.raises(pickle.UnpicklingError):
        compat._history_buffer_getattr(os, "system")


def test_stock_script_prints_hisyngen_errors_in_one_line(tmp_path):
    code = "import hisyngen.mmseg\nfrom hisyngen.errors import HisynError\nraise HisynError('bad thing')\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"))
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == "error: bad thing"
    assert "Traceback" not in proc.stderr


def test_pretrained_download_failure_is_one_line(monkeypatch):
    from mmengine.runner import checkpoint as ckpt

    def offline(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(ckpt, "load_url", offline)
    with pytest.raises(compat.PretrainedFetchError) as info:
        ckpt.CheckpointLoader.load_checkpoint("open-mmlab://resnet50_v1c")
    message = str(info.value)
    assert "https://download.openmmlab.com/" in message and "--no-pretrained" in message
    assert "--pretrained FILE" in message and "\n" not in message


def _without_val(tiny_export, tmp_path):
    export = shutil.copytree(tiny_export, tmp_path / "noval")
    (export / "splits" / "val.txt").write_text("")
    shutil.rmtree(export / "img_dir" / "val")
    shutil.rmtree(export / "ann_dir" / "val")
    return export


def test_export_without_val_masks_validates_on_held_out_synthetic(tiny_export, tmp_path):
    from hisyngen.mmseg.datasets import HisynEvalDataset, HisynMixedDataset, synthetic_holdout

    export = _without_val(tiny_export, tmp_path)
    held = synthetic_holdout(export)
    assert held == ["mosaic-s0-000000"]
    val = HisynEvalDataset(data_root=str(export), split="val", pipeline=[])
    assert [os.path.basename(val.get_data_info(i)["seg_map_path"]) for i in range(len(val))] == ["mosaic-s0-000000.png"]
    train = HisynMixedDataset(data_root=str(export), pipeline=[])
    trained = {os.path.basename(train.get_data_info(i)["img_path"]) for i in range(len(train))}
    assert "mosaic-s0-000000.png" not in trained and "mosaic-s0-000001.png" in trained
    assert synthetic_holdout(tiny_export) == []  # real val masks: nothing held out


def test_test_split_without_masks_is_one_line(tiny_export, tmp_path):
    from hisyngen.mmseg.datasets import HisynEvalDataset

    export = shutil.copytree(tiny_export, tmp_path / "notest")
    (export / "splits" / "test.txt").write_text("")
    with pytest.raises(HisynError, match="no test images with masks"):
        HisynEvalDataset(data_root=str(export), split="test", pipeline=[])


def test_bf16_optim_wrapper_builds_and_autocasts_on_cpu():
    from mmengine.registry import OPTIM_WRAPPERS

    model = torch.nn.Linear(4, 4)
    wrapper = OPTIM_WRAPPERS.build(dict(type="BF16OptimWrapper", optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))
    with wrapper.optim_context(model):
        out = model(torch.ones(2, 4))
    assert out.dtype == torch.bfloat16 and model.weight.dtype == torch.float32
    wrapper.update_params(out.float().sum())


def test_dist_teardown_hook_destroys_the_process_group(tmp_path):
    import torch.distributed as dist

    from hisyngen.mmseg.hooks import DistTeardownHook

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        DistTeardownHook().after_run(runner=None)
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_run_without_val_masks_exits_zero(tiny_export, tmp_path):
    export = _without_val(tiny_export, tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "hisyngen", "train", "smoke", "--data-root", str(export),
                           "--gpus", "2", "--work-dir", str(tmp_path / "wd"), "--precision", "fp32"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "validating on 1 held-out synthetic images" in out and "need at least one array" not in out

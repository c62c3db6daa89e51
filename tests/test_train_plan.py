"""Which training commands a build prints (hisyngen.train_plan), and the build summary that prints them."""

import shlex
from pathlib import Path

import pytest

from hisyngen.build import render_summary
from hisyngen.train_plan import (CPU_TRIAL_BATCH, CPU_TRIAL_CONFIG, CPU_TRIAL_ITERATIONS, choose_train_commands,
                                 paper_config, pretrained_available, pretrained_file)

PAPER = "deeplabv3plus_r50-d8_bcss-wsss"


def choose(has_cuda, cached):
    return choose_train_commands(has_cuda, cached, PAPER, "/x/export/mmseg", "/x/train")


@pytest.mark.parametrize("cached", [True, False])
def test_without_cuda_the_cpu_trial_comes_first_and_the_paper_command_is_for_a_gpu(cached):
    cpu, gpu = choose(False, cached)
    assert cpu.device == "cpu" and gpu.device == "gpu"
    assert "no CUDA GPU" in cpu.label and gpu.label.startswith("for a GPU")
    assert cpu.args[:2] == ("train", CPU_TRIAL_CONFIG) and gpu.args[:2] == ("train", PAPER)
    assert f"train_cfg.max_iters={CPU_TRIAL_ITERATIONS}" in cpu.args
    assert f"train_dataloader.batch_size={CPU_TRIAL_BATCH}" in cpu.args
    # the CPU config starts from random weights itself: nothing to download, cached or not
    assert "--no-pretrained" not in cpu.args
    assert shlex.split(cpu.text)[0] == "hisyngen" and tuple(shlex.split(cpu.text)[1:]) == cpu.args


def test_with_cuda_the_paper_command_comes_first():
    gpu, cpu = choose(True, True)
    assert (gpu.device, cpu.device) == ("gpu", "cpu")
    assert "GPU" in gpu.label and cpu.label.startswith("a CPU trial")
    assert cpu.args == choose(False, True)[0].args  # the same trial either way


@pytest.mark.parametrize("has_cuda", [True, False])
def test_uncached_weights_give_no_pretrained_and_a_note(has_cuda):
    gpu = next(c for c in choose(has_cuda, False) if c.device == "gpu")
    assert "--no-pretrained" in gpu.args and "--pretrained FILE" in gpu.note
    cached = next(c for c in choose(has_cuda, True) if c.device == "gpu")
    assert "--no-pretrained" not in cached.args and cached.note is None


def test_each_command_trains_in_its_own_folder_under_the_work_root():
    cpu, gpu = choose(False, True)
    assert cpu.work_dir == "/x/train/" + CPU_TRIAL_CONFIG and gpu.work_dir == "/x/train/" + PAPER
    for command in (cpu, gpu):
        args = list(command.args)
        assert args[args.index("--work-dir") + 1] == command.work_dir
        assert args[args.index("--data-root") + 1] == "/x/export/mmseg"


def test_paper_config_of_each_dataset():
    assert paper_config("bcss-wsss").stem == PAPER
    assert paper_config("wsss4luad").stem == "deeplabv3plus_r50-d8_wsss4luad"
    assert paper_config("my-custom-set").stem == PAPER
    assert paper_config("smoke").stem == PAPER  # a custom dataset named like a packaged CPU config


def test_pretrained_file_is_where_torch_caches_downloads(tmp_path, monkeypatch):
    pytest.importorskip("mmengine")
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = pretrained_file("open-mmlab://resnet50_v1c")
    assert path == tmp_path / "checkpoints" / "resnet50_v1c-2cccc1ad.pth"
    assert pretrained_file("https://host/a/b/w-123.pth") == tmp_path / "checkpoints" / "w-123.pth"
    assert pretrained_file(None) is None and pretrained_file(str(tmp_path / "w.pth")) == tmp_path / "w.pth"

    config = paper_config("bcss-wsss")
    assert not pretrained_available(config)
    path.parent.mkdir()
    path.write_bytes(b"weights")  # only its presence counts: nothing is loaded to decide
    assert pretrained_available(config)
    assert pretrained_available(Path(paper_config("bcss-wsss").parent / f"{CPU_TRIAL_CONFIG}.py"))  # none needed


def test_summary_prints_every_command_with_its_label_and_note():
    commands = [c.as_dict() for c in choose(False, False)]
    summary = {"out": "b", "source": "s", "dataset": "bcss-wsss", "seconds_this_run": 1, "strategies": {},
               "exports": {}, "train_commands": commands, "train_command": commands[0]["command"],
               "stock_train_command": "python train.py cfg --cfg-options model.pretrained=None"}
    text = render_summary(summary)
    cpu_at = text.index(commands[0]["command"])
    gpu_at = text.index(commands[1]["command"])
    assert text.index(commands[0]["label"]) < cpu_at < text.index(commands[1]["label"]) < gpu_at
    assert commands[1]["note"] in text and summary["stock_train_command"] in text

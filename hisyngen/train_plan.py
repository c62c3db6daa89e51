"""The training commands a finished build (or ``hisyngen demo``) prints, fitted to the machine.

One home for the choice, :func:`choose_train_commands` (pure: the tests call it with every case):

* no CUDA GPU: first a CPU trial, ``cpu_deeplabv3plus_r18`` (DeepLabV3+ ResNet-18 from scratch: no
  download) for :data:`CPU_TRIAL_ITERATIONS` steps of :data:`CPU_TRIAL_BATCH` images, minutes on
  any export; then the paper's DeepLabV3+ R50-D8 command, labelled for a GPU (hours on a CPU);
* a CUDA GPU: the paper's command first, then the CPU trial.

The R50-D8 configs start from ImageNet weights that mmengine downloads into torch's hub cache
(:func:`pretrained_available` looks there, without any network call). When they are not cached,
the printed R50-D8 command carries ``--no-pretrained``, so it also finishes on an offline machine,
and a note says how to start from the weights as the paper does.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CPU_TRIAL_CONFIG = "cpu_deeplabv3plus_r18"
CPU_TRIAL_BATCH = 8
"""Images per CPU-trial step: the config's 1:1 sampler makes it 4 synthetic + 4 real."""
CPU_TRIAL_ITERATIONS = 100
"""CPU-trial steps: 6 minutes of training on the demo export on a loaded 2-core CPU in bf16 (README, demo section)."""
WORK_FOLDER = "train"
"""Where the printed commands train, inside the build folder: ``BUILD/train/<config>``."""


@dataclass(frozen=True)
class TrainCommand:
    """One printed training command: ``hisyngen`` + :attr:`args`."""

    device: str  # "cpu" (the CPU trial) or "gpu" (the paper's R50-D8)
    label: str
    args: tuple[str, ...]
    work_dir: str
    note: str | None = None

    @property
    def text(self) -> str:
        return shlex.join(("hisyngen", *self.args))

    def as_dict(self) -> dict[str, Any]:
        return {"device": self.device, "label": self.label, "command": self.text, "work_dir": self.work_dir,
                "note": self.note}


def cpu_trial_options(iterations: int = CPU_TRIAL_ITERATIONS, batch: int = CPU_TRIAL_BATCH) -> list[str]:
    """The CPU trial's ``--cfg-options``: a fixed number of steps, whatever the export's size (the
    last step validates and saves its checkpoint: mmengine's loop and checkpoint hook do both)."""
    return [f"train_dataloader.batch_size={batch}", f"train_cfg.max_iters={iterations}"]


def choose_train_commands(has_cuda: bool, pretrained_cached: bool, paper_config: str, data_root: str | Path,
                          work_root: str | Path) -> list[TrainCommand]:
    """The commands to print for an MMSeg export at ``data_root``, the one for this machine first.

    ``paper_config`` is the paper's R50-D8 config of the dataset; ``pretrained_cached`` whether its
    ImageNet weights are on disk (else it gets ``--no-pretrained``); runs go to ``work_root/<config>``.
    """
    root, work = str(data_root), Path(work_root)
    cpu_dir = str(work / CPU_TRIAL_CONFIG)
    cpu = TrainCommand(
        "cpu", ("a CPU trial" if has_cuda else "on this machine (no CUDA GPU): a CPU trial")
        + f", DeepLabV3+ R18 from scratch, {CPU_TRIAL_ITERATIONS} steps of {CPU_TRIAL_BATCH // 2} synthetic + "
        f"{CPU_TRIAL_BATCH // 2} real images (minutes)",
        ("train", CPU_TRIAL_CONFIG, "--data-root", root, "--work-dir", cpu_dir, "--cfg-options", *cpu_trial_options()),
        cpu_dir)
    gpu_dir = str(work / paper_config)
    note = None
    if not pretrained_cached:
        note = ("its ImageNet weights are not cached here: --no-pretrained trains from scratch, offline too; to start "
                "from them as the paper does, drop it where online or pass --pretrained FILE")
    gpu = TrainCommand(
        "gpu", ("on this machine's GPU" if has_cuda else "for a GPU (hours on a CPU)")
        + ": the paper's DeepLabV3+ R50-D8, its epochs on this export",
        ("train", paper_config, "--data-root", root, "--work-dir", gpu_dir,
         *(() if pretrained_cached else ("--no-pretrained",))),
        gpu_dir, note)
    return [gpu, cpu] if has_cuda else [cpu, gpu]


def paper_config(dataset: str) -> Path:
    """The paper's R50-D8 config of a built-in dataset; a custom one gets BCSS-WSSS's (fitted to the
    export's classes by ``hisyngen train``)."""
    from hisyngen.mmseg_launch import mmseg_config_path
    from hisyngen.errors import HisynError

    try:
        path = mmseg_config_path(dataset)
    except HisynError:
        path = None
    # a short name also matches other configs by prefix ("cpu", "smoke"): only an R50-D8 one counts
    return path if path is not None and path.stem.startswith("deeplabv3plus_r50-d8") else mmseg_config_path("bcss-wsss")


def pretrained_file(pretrained: str | None) -> Path | None:
    """Where the weights a config's ``model.pretrained`` names are, or would be once downloaded:
    a local path as it is; ``open-mmlab://NAME`` and URLs in torch's hub cache, named as
    ``torch.hub.load_state_dict_from_url`` (which mmengine's ``load_from_http`` calls) names them.
    None when the config needs no weights. The ``open-mmlab://`` names resolve with mmengine
    (:func:`hisyngen.extras.open_mmlab_url`)."""
    if not pretrained:
        return None
    from hisyngen.extras import open_mmlab_url

    url = open_mmlab_url(pretrained)
    if not url.startswith(("http://", "https://")):
        return Path(url).expanduser()
    from urllib.parse import urlparse

    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def pretrained_available(config: Path) -> bool:
    """Whether training ``config`` needs no download: it names no weights, or they are on disk.
    False without mmengine (no config can be read, nor trained, there)."""
    from hisyngen.extras import missing_openmmlab

    if missing_openmmlab():
        return False
    from hisyngen.mmseg_launch import load_mmseg_config

    path = pretrained_file(load_mmseg_config(config).model.get("pretrained"))
    return path is None or path.is_file()


def machine_train_commands(dataset: str, export_dir: Path, work_root: Path) -> list[TrainCommand]:
    """:func:`choose_train_commands` for this machine: CUDA from torch, the weights from the cache."""
    import torch

    config = paper_config(dataset)
    return choose_train_commands(torch.cuda.is_available(), pretrained_available(config), config.stem,
                                 export_dir.resolve(), work_root.resolve())

"""Commands around MMSegmentation: ``train``, ``test`` (the stock mmseg scripts) and ``pseudo-label``.

``train`` and ``test`` run the unmodified ``tools/train.py`` / ``tools/test.py`` shipped in the
mmseg wheel, in a subprocess with this Python; every argument they do not know is passed through
(``--work-dir``, ``--resume``, ``--amp``, ``--tta``, ``--cfg-options ...``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable, Iterable

import click

from hisyngen.errors import HisynError
from hisyngen.extras import require_openmmlab
from hisyngen.mmseg_launch import DEFAULT_TRAIN_PRECISION, TRAIN_PRECISIONS

PASSTHROUGH = dict(ignore_unknown_options=True, allow_extra_args=True, help_option_names=["-h", "--help"])


def _common(func: Callable) -> Callable:
    """``--gpus`` and ``--data-root``, shared by ``train`` and ``test``."""
    func = click.option("--gpus", default=1, show_default=True, type=click.IntRange(min=1),
                        help="Processes (one per GPU) launched with torchrun and --launcher pytorch.")(func)
    func = click.option("--data-root", type=click.Path(file_okay=False), default=None,
                        help="The MMSeg export to use (sets data_root of the train/val/test datasets).")(func)
    return func


def _trust_option(func: Callable) -> Callable:
    return click.option("--trust-checkpoint", is_flag=True,
                        help="Load checkpoints that hold more than a hisyngen/mmengine run saves (unpickling "
                             "runs any code in them: only files you trust). Same as HISYNGEN_TRUST_CHECKPOINTS=1.")(func)


def _env(trust_checkpoint: bool) -> dict[str, str]:
    from hisyngen.mmseg_launch import TRUST_CHECKPOINTS_ENV

    return {**os.environ, TRUST_CHECKPOINTS_ENV: "1"} if trust_checkpoint else dict(os.environ)


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    click.echo("running: " + " ".join(argv), err=True)
    code = subprocess.call(argv, env=env)
    if code:
        raise SystemExit(code)


@click.command(context_settings=PASSTHROUGH)
@click.argument("config")
@_common
@click.option("--no-pretrained", is_flag=True, help="Start from random weights (no ImageNet download; offline use).")
@click.option("--pretrained", "pretrained_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Backbone weights from this local checkpoint instead of the config's download.")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Passes over the export's synthetic images (sets max_iters and the val/checkpoint interval) "
                   "[default: the paper configs' own epochs, on this export's size].")
@click.option("--precision", type=click.Choice(TRAIN_PRECISIONS), default=DEFAULT_TRAIN_PRECISION, show_default=True,
              help="bf16: bf16 autocast over float32 weights (BF16OptimWrapper). auto: bf16 on a CPU with "
                   "AMX/AVX-512-BF16 or a CUDA device with native bf16, else fp32.")
@_trust_option
@click.argument("mmseg_args", nargs=-1, type=click.UNPROCESSED)
def train(config: str, data_root: str | None, gpus: int, no_pretrained: bool, pretrained_file: str | None,
          epochs: float | None, precision: str, trust_checkpoint: bool, mmseg_args: tuple[str, ...]) -> None:
    """Train with MMSegmentation's stock tools/train.py.

    CONFIG is a config file or a packaged config name: bcss-wsss, luad-histoseg, wsss4luad,
    bcss-wsss_stage2, luad-histoseg_stage2, smoke (tiny CPU), cpu (ResNet-18 for CPU experiments).
    Other options go to tools/train.py.

    \b
    Example:
      hisyngen train bcss-wsss --data-root out/bcss-mmseg --work-dir runs/bcss
      hisyngen train smoke --data-root out/mini-mmseg --no-pretrained
      hisyngen train bcss-wsss --data-root out/bcss-mmseg --gpus 4 --resume
    """
    require_openmmlab("hisyngen train")  # before mmengine parses the config: one line, not a traceback
    from hisyngen.mmseg_launch import (config_with, export_options, mmseg_config_path, precision_options,
                                  schedule_options, tool_command, train_precision, user_cfg_options, validation_options,
                                  with_options)

    if no_pretrained and pretrained_file:
        raise HisynError("--no-pretrained and --pretrained FILE exclude each other")
    path = mmseg_config_path(config)
    user = user_cfg_options(mmseg_args)
    cfg = config_with(path, user)
    options, notes = export_options(cfg, data_root)
    more, schedule_notes = schedule_options(cfg, data_root, gpus, epochs,
                                            per_process_batch="train_dataloader.batch_size" in user)
    options += more
    notes += schedule_notes
    more, validation_notes = validation_options(cfg, data_root)
    options += more
    notes += validation_notes
    if no_pretrained:
        options.append("model.pretrained=None")
    if pretrained_file:
        options.append(f"model.pretrained={Path(pretrained_file).resolve()}")
    if "--amp" in mmseg_args:
        if precision == "bf16":
            raise HisynError("--amp (the stock script's fp16) and --precision bf16 exclude each other")
        notes.append("precision: the stock script's --amp (fp16 autocast)")
    else:
        resolved, why = train_precision(precision)
        options += precision_options(resolved)
        notes.append(f"precision: {resolved} ({why})")
    for note in notes:
        click.echo(note, err=True)
    _run(tool_command("train", with_options(path, options, mmseg_args), nproc=gpus), _env(trust_checkpoint))


@click.command(context_settings=PASSTHROUGH)
@click.argument("config")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@_common
@_trust_option
@click.argument("mmseg_args", nargs=-1, type=click.UNPROCESSED)
def test(config: str, checkpoint: str, data_root: str | None, gpus: int, trust_checkpoint: bool,
         mmseg_args: tuple[str, ...]) -> None:
    """Evaluate CHECKPOINT on the test split with MMSegmentation's stock tools/test.py.

    Prints per-class IoU, mIoU and fwIoU. Other options go to tools/test.py (e.g. --tta for the
    flip/rotation (and, for WSSS4LUAD, multi-scale) test-time augmentation, --work-dir, --out).

    \b
    Example:
      hisyngen test wsss4luad runs/wsss/best_mIoU_iter_13500.pth --data-root out/wsss-mmseg --tta
    """
    require_openmmlab("hisyngen test")
    from hisyngen.mmseg_launch import (config_with, export_options, mmseg_config_path, require_masks, tool_command,
                                  user_cfg_options, with_options)

    path = mmseg_config_path(config)
    if not Path(checkpoint).is_file():
        raise HisynError(f"checkpoint not found: {checkpoint}")
    cfg = config_with(path, user_cfg_options(mmseg_args))
    options, _ = export_options(cfg, data_root, "test_dataloader")
    require_masks(cfg, data_root, "test")
    # The checkpoint holds every weight: no ImageNet download (offline machines).
    args = with_options(path, ["model.pretrained=None", *options], mmseg_args)
    _run(tool_command("test", [args[0], checkpoint, *args[1:]], nproc=gpus), _env(trust_checkpoint))


@click.command("pseudo-label")
@click.argument("config")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--source", "export_dir", required=True, type=click.Path(file_okay=False),
              help="The MMSeg export whose real train images get pseudo masks (ann_dir/train_real/).")
@click.option("--device", default=None, help="Torch device (default: cuda:0 when available, else cpu).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Multi-label images predicted at once.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@_trust_option
def pseudo_label(config: str, checkpoint: str, export_dir: str, device: str | None, batch_size: int,
                 quiet: bool, trust_checkpoint: bool) -> None:
    """Write pseudo masks for the real train images of an export (the iterative stage).

    Single-label images get their class everywhere; multi-label images get the prediction of
    CHECKPOINT with absent classes suppressed; white background gets 255. Then train a stage-2
    config (bcss-wsss_stage2, luad-histoseg_stage2) on the same export.

    \b
    Example:
      hisyngen pseudo-label bcss-wsss runs/bcss/best_mIoU_iter_11250.pth --source out/bcss-mmseg
      hisyngen train bcss-wsss_stage2 --data-root out/bcss-mmseg
    """
    require_openmmlab("hisyngen pseudo-label")
    from hisyngen.mmseg_launch import TRUST_CHECKPOINTS_ENV, mmseg_config_path

    path = mmseg_config_path(config)
    if trust_checkpoint:
        os.environ[TRUST_CHECKPOINTS_ENV] = "1"  # read by the checkpoint loader, in this process
    from hisyngen.mmseg.pseudo_label import pseudo_label as run_pseudo_label  # applies compat, registers

    progress = None
    if not quiet:
        from hisyngen.progress import progress_bar as tqdm  # a bar on a terminal, log lines elsewhere

        def progress(items: Iterable[str]) -> Iterable[str]:
            return tqdm(items, desc="pseudo masks", unit="img")

    report = run_pseudo_label(path, checkpoint, export_dir, device=device, batch_size=batch_size, progress=progress)
    click.echo(report.summary())


COMMANDS = [train, test, pseudo_label]

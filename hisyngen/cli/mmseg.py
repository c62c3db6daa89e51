"""Commands around MMSegmentation: ``train``, ``test`` (the stock mmseg scripts) and ``pseudo-label``.

``train`` and ``test`` run the unmodified ``tools/train.py`` / ``tools/test.py`` shipped in the
mmseg wheel, in a subprocess with this Python; every argument they do not know is passed through
(``--work-dir``, ``--resume``, ``--amp``, ``--tta``, ``--cfg-options ...``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable, Iterable

import click

from hisyngen.errors import HisynError

PASSTHROUGH = dict(ignore_unknown_options=True, allow_extra_args=True, help_option_names=["-h", "--help"])


def _common(func: Callable) -> Callable:
    """``--gpus`` and ``--data-root``, shared by ``train`` and ``test``."""
    func = click.option("--gpus", default=1, show_default=True, type=click.IntRange(min=1),
                        help="Processes (one per GPU) launched with torchrun and --launcher pytorch.")(func)
    func = click.option("--data-root", type=click.Path(file_okay=False), default=None,
                        help="The MMSeg export to use (sets data_root of the train/val/test datasets).")(func)
    return func


def _run(argv: list[str]) -> None:
    click.echo("running: " + " ".join(argv), err=True)
    code = subprocess.call(argv)
    if code:
        raise SystemExit(code)


def _load_config(path: Path):  # noqa: ANN202 (mmengine Config)
    from mmengine.config import Config

    try:
        return Config.fromfile(str(path), import_custom_modules=False)
    except Exception as exc:  # a user's config file with a syntax or key error
        raise HisynError(f"cannot read config {path}: {' '.join(str(exc).split())}") from None


def user_cfg_options(mmseg_args: Iterable[str]) -> dict:
    """The ``--cfg-options`` a user passes through to the stock script, parsed as mmengine does."""
    import argparse

    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={})
    known, _ = parser.parse_known_args(list(mmseg_args))
    return dict(known.cfg_options or {})


def _config_with(path: Path, user: dict):  # noqa: ANN202 (mmengine Config)
    """The config as the stock script will see it: the file, then the user's --cfg-options."""
    cfg = _load_config(path)
    try:
        cfg.merge_from_dict(user)
    except Exception as exc:
        raise HisynError(f"--cfg-options do not apply to {path}: {' '.join(str(exc).split())}") from None
    return cfg


def _dataset_root(cfg, loader: str) -> Path:  # noqa: ANN001
    root = cfg.get(loader, {}).get("dataset", {}).get("data_root")
    if not root:
        raise HisynError(f"the config has no {loader}.dataset.data_root; pass --data-root EXPORT")
    return Path(root)


def export_options(cfg, data_root: str | None, loader: str = "train_dataloader") -> tuple[list[str], list[str]]:  # noqa: ANN001
    """cfg-options pointing ``cfg`` at the export (``data_root`` or the config's own), and notes.

    The export must exist and be an MMSeg export; the decode head gets the export's class count
    (the datasets take classes from its ``metainfo.json``, so the head must agree).
    """
    from hisyngen.configs import data_root_options
    from hisyngen.mmseg.datasets import read_export_metainfo

    root = Path(data_root) if data_root else _dataset_root(cfg, loader)
    try:
        meta = read_export_metainfo(root)
    except HisynError as exc:
        hint = "" if data_root else " (the config's data_root; pass --data-root EXPORT)"
        raise HisynError(f"{exc}{hint}") from None
    options = data_root_options(root) if data_root else []
    notes = []
    head = cfg.model.get("decode_head", {})
    if head.get("num_classes") != len(meta["classes"]):
        options.append(f"model.decode_head.num_classes={len(meta['classes'])}")
        notes.append(f"{len(meta['classes'])} classes ({', '.join(meta['classes'])}) from {root / 'metainfo.json'}")
    return options, notes


def schedule_options(cfg, data_root: str | None, gpus: int, epochs: float | None,
                     per_process_batch: bool = False) -> tuple[list[str], list[str]]:  # noqa: ANN001
    """cfg-options keeping the config's step across ``gpus`` processes and its epochs on this export.

    ``train_dataloader.batch_size`` is per process: with N processes each takes 1/N of it, so a
    step still holds the config's 32 + 32 images (unless ``per_process_batch``: the user set the
    batch per GPU). An epoch is one pass over the export's synthetic images: ``epochs`` (or, for a
    config whose schedule is ``epochs x ceil(num_synthetic / synthetic_per_step)``, its own
    ``epochs``) becomes max_iters and the val/checkpoint interval.
    """
    from hisyngen.configs import iterations_for_epochs
    from hisyngen.mmseg.datasets import read_ids
    from hisyngen.mmseg.samplers import split_batch

    loader = cfg.get("train_dataloader")
    if not loader:
        raise HisynError("the config has no train_dataloader to train with")
    batch = int(loader.batch_size)
    options, notes = [], []
    if gpus > 1 and not per_process_batch:
        if batch % gpus:
            raise HisynError(f"the config's batch of {batch} images per step does not split over {gpus} GPUs; "
                             "pass --cfg-options train_dataloader.batch_size=N for N images per GPU")
        batch //= gpus
        options.append(f"train_dataloader.batch_size={batch}")
        notes.append(f"{batch} images per GPU x {gpus} GPUs = the config's {batch * gpus} per step")
    ratio = loader.get("batch_sampler", {}).get("ratio", (1, 1))
    per_gpu, _ = split_batch(batch, ratio)  # refuses a batch too small for the ratio
    per_step = per_gpu * gpus
    own = [cfg.get(k) for k in ("epochs", "num_synthetic", "synthetic_per_step")]
    if epochs is None and all(own) and cfg.train_cfg.get("max_iters") == own[0] * -(-own[1] // own[2]):
        epochs = own[0]
    if epochs is None:
        return options, notes
    root = Path(data_root) if data_root else _dataset_root(cfg, "train_dataloader")
    num_synthetic = len(read_ids(root / "splits" / "train.txt"))
    max_iters, per_epoch = iterations_for_epochs(num_synthetic, per_step, epochs)
    notes.append(f"{epochs:g} epochs x ceil({num_synthetic} synthetic / {per_step} per step) = {max_iters} iterations")
    return options + [f"train_cfg.max_iters={max_iters}", f"train_cfg.val_interval={per_epoch}",
                      f"default_hooks.checkpoint.interval={per_epoch}"], notes


@click.command(context_settings=PASSTHROUGH)
@click.argument("config")
@_common
@click.option("--no-pretrained", is_flag=True, help="Start from random weights (no ImageNet download; offline use).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Passes over the export's synthetic images (sets max_iters and the val/checkpoint interval) "
                   "[default: the paper configs' own epochs, on this export's size].")
@click.argument("mmseg_args", nargs=-1, type=click.UNPROCESSED)
def train(config: str, data_root: str | None, gpus: int, no_pretrained: bool, epochs: float | None,
          mmseg_args: tuple[str, ...]) -> None:
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
    from hisyngen.configs import mmseg_config_path, tool_command

    path = mmseg_config_path(config)
    user = user_cfg_options(mmseg_args)
    cfg = _config_with(path, user)
    options, notes = export_options(cfg, data_root)
    more, schedule_notes = schedule_options(cfg, data_root, gpus, epochs,
                                            per_process_batch="train_dataloader.batch_size" in user)
    options += more
    if no_pretrained:
        options.append("model.pretrained=None")
    for note in notes + schedule_notes:
        click.echo(note, err=True)
    _run(tool_command("train", _with_options(path, options, mmseg_args), nproc=gpus))


def _with_options(path: Path, options: list[str], mmseg_args: Iterable[str]) -> list[str]:
    """Script arguments with our --cfg-options BEFORE the user's: mmengine lets the last one win."""
    return [str(path), *(["--cfg-options", *options] if options else []), *mmseg_args]


@click.command(context_settings=PASSTHROUGH)
@click.argument("config")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@_common
@click.argument("mmseg_args", nargs=-1, type=click.UNPROCESSED)
def test(config: str, checkpoint: str, data_root: str | None, gpus: int, mmseg_args: tuple[str, ...]) -> None:
    """Evaluate CHECKPOINT on the test split with MMSegmentation's stock tools/test.py.

    Prints per-class IoU, mIoU and fwIoU. Other options go to tools/test.py (e.g. --tta for the
    flip/rotation (and, for WSSS4LUAD, multi-scale) test-time augmentation, --work-dir, --out).

    \b
    Example:
      hisyngen test wsss4luad runs/wsss/best_mIoU_iter_13500.pth --data-root out/wsss-mmseg --tta
    """
    from hisyngen.configs import mmseg_config_path, tool_command

    path = mmseg_config_path(config)
    if not Path(checkpoint).is_file():
        raise HisynError(f"checkpoint not found: {checkpoint}")
    options, _ = export_options(_config_with(path, user_cfg_options(mmseg_args)), data_root, "test_dataloader")
    args = _with_options(path, options, mmseg_args)
    _run(tool_command("test", [args[0], checkpoint, *args[1:]], nproc=gpus))


@click.command("pseudo-label")
@click.argument("config")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--source", "export_dir", required=True, type=click.Path(file_okay=False),
              help="The MMSeg export whose real train images get pseudo masks (ann_dir/train_real/).")
@click.option("--device", default=None, help="Torch device (default: cuda:0 when available, else cpu).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Multi-label images predicted at once.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def pseudo_label(config: str, checkpoint: str, export_dir: str, device: str | None, batch_size: int,
                 quiet: bool) -> None:
    """Write pseudo masks for the real train images of an export (the iterative stage).

    Single-label images get their class everywhere; multi-label images get the prediction of
    CHECKPOINT with absent classes suppressed; white background gets 255. Then train a stage-2
    config (bcss-wsss_stage2, luad-histoseg_stage2) on the same export.

    \b
    Example:
      hisyngen pseudo-label bcss-wsss runs/bcss/best_mIoU_iter_11250.pth --source out/bcss-mmseg
      hisyngen train bcss-wsss_stage2 --data-root out/bcss-mmseg
    """
    from hisyngen.configs import mmseg_config_path

    path = mmseg_config_path(config)
    from hisyngen.mmseg.pseudo_label import pseudo_label as run_pseudo_label  # applies compat, registers

    progress = None
    if not quiet:
        from tqdm import tqdm

        def progress(items: Iterable[str]) -> Iterable[str]:
            return tqdm(items, desc="pseudo masks", unit="img")

    report = run_pseudo_label(path, checkpoint, export_dir, device=device, batch_size=batch_size, progress=progress)
    click.echo(report.summary())


COMMANDS = [train, test, pseudo_label]

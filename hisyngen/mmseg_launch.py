"""Launching MMSegmentation's stock tools on hisyngen's configs (no heavy imports): where the configs
and scripts live, the training precision, epochs -> iterations, and the ``--cfg-options`` and argv
that ``hisyngen train``/``test``, the paper configs and the benchmarks run them with. (The plugin
those configs import is :mod:`hisyngen.mmseg`; the build's own settings are :mod:`hisyngen.build.config`.)

The configs ship inside the package (``hisyngen/mmseg_configs``, a symlink to the repository's
top-level ``mmseg_configs/`` that setuptools copies into wheels); the stock ``tools/train.py`` and
``tools/test.py`` ship inside the mmseg wheel (``mmseg/.mim/tools``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Iterable, Sequence

from hisyngen.errors import HisynError
from hisyngen.spec import get_spec

CONFIG_DIR = Path(__file__).resolve().parent / "mmseg_configs"
TRUST_CHECKPOINTS_ENV = "HISYNGEN_TRUST_CHECKPOINTS"
"""Set to 1 (``--trust-checkpoint``) to unpickle local checkpoints with ``weights_only=False``: any
object, i.e. any code, a file carries. Without it only what hisyngen/mmengine runs save loads."""


def packaged_configs() -> list[str]:
    """Short names (file stems) of the packaged configs, sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py"))


def mmseg_config_path(name: str) -> Path:
    """A config file by path, or a packaged config by short name.

    A short name is a stem (``smoke_deeplabv3plus_r18``), or what a stem ends with after ``_``
    (``bcss-wsss``, ``bcss-wsss_stage2``) or begins with before ``_`` (``smoke``), when that is
    unambiguous.
    """
    path = Path(name).expanduser()
    if path.suffix == ".py" or path.parent != Path("."):
        if not path.is_file():
            raise HisynError(f"config file not found: {path}")
        return path.resolve()
    stems = packaged_configs()
    for rule in (lambda s: s == name, lambda s: s.endswith("_" + name), lambda s: s.startswith(name + "_")):
        matches = [s for s in stems if rule(s)]
        if len(matches) == 1:
            return CONFIG_DIR / f"{matches[0]}.py"
        if len(matches) > 1:
            raise HisynError(f"config name {name!r} is ambiguous: {', '.join(matches)}")
    raise HisynError(f"unknown config {name!r}: not a file, and not one of {', '.join(stems)}")


BF16_OPTIM_WRAPPER = "BF16OptimWrapper"
"""The optim wrapper (hisyngen.mmseg.compat) that trains under bf16 autocast, on CPU and CUDA."""

TRAIN_PRECISIONS = ("auto", "fp32", "bf16")
"""``hisyngen train --precision``: auto is bf16 where the hardware computes it natively."""
DEFAULT_TRAIN_PRECISION = "auto"


def train_precision(requested: str, device: str | None = None) -> tuple[str, str]:
    """(fp32 or bf16, why) for ``hisyngen train --precision requested`` on ``device`` (default:
    cuda when available, else cpu). Detection is :mod:`hisyngen.precision`'s (one home); where
    bf16 is not native, ``auto`` trains fp32 (fp16 stays the stock ``--amp``) and ``bf16`` is refused."""
    import torch

    from hisyngen.precision import CPU_BF16_FLAGS, cpu_bf16_flags, native_bf16, resolve_precision

    if requested not in TRAIN_PRECISIONS:
        raise HisynError(f"--precision {requested!r} is not one of {', '.join(TRAIN_PRECISIONS)}")
    where = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if requested == "fp32":
        return "fp32", "as requested"
    if requested == "bf16":
        return resolve_precision("bf16", where), "as requested"
    if native_bf16(where):
        why = (f"CPU with {', '.join(cpu_bf16_flags())}" if where.type == "cpu" else "CUDA device with native bf16")
        return "bf16", f"auto: {why}"
    return "fp32", (f"auto: no native bf16 on this {'CPU' if where.type == 'cpu' else 'GPU'}"
                    + (f" (no {' or '.join(CPU_BF16_FLAGS)})" if where.type == "cpu" else ""))


def precision_options(precision: str) -> list[str]:
    """cfg-options training a config in ``precision`` (fp32: the config as it is)."""
    return [f"optim_wrapper.type={BF16_OPTIM_WRAPPER}"] if precision == "bf16" else []


def stock_tool(name: str) -> Path:
    """Path of mmseg's stock ``tools/<name>.py`` inside the installed mmseg wheel."""
    spec = importlib.util.find_spec("mmseg")
    if spec is None or not spec.submodule_search_locations:
        raise HisynError("mmsegmentation is not installed (pip install mmsegmentation==1.2.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / ".mim" / "tools" / f"{name}.py"
    if not path.is_file():
        raise HisynError(f"mmseg's stock {name}.py is missing at {path} (reinstall mmsegmentation)")
    return path


def iterations_for_epochs(num_synthetic: int, synthetic_per_step: int, epochs: float) -> tuple[int, int]:
    """(max_iters, iters_per_epoch): an epoch is one pass over the synthetic images."""
    if num_synthetic <= 0 or synthetic_per_step <= 0 or epochs <= 0:
        raise HisynError("epochs, synthetic images and synthetic images per step must be positive")
    per_epoch = -(-num_synthetic // synthetic_per_step)
    return int(round(epochs * per_epoch)), per_epoch


def paper_dataset_config(dataset: str, data_root: str, *, num_synthetic: int, epochs: int, synthetic_per_step: int,
                         test_cfg: dict | None = None) -> dict:
    """The top-level names of a paper dataset config (``mmseg_configs/deeplabv3plus_r50-d8_<dataset>.py``)
    from its stanza: the stanza's values, the head's class count (:mod:`hisyngen.spec`), the export
    in the three dataloaders, the model's ``test_cfg`` when given, and the schedule (``epochs`` x
    iters_per_epoch; validation and checkpoint once per epoch). An mmengine base cannot read a
    child's values, so each config merges this into its own names (``globals().update``)."""
    num_classes = get_spec(dataset).num_classes
    iters_per_epoch = iterations_for_epochs(num_synthetic, synthetic_per_step, epochs)[1]
    return dict(
        num_classes=num_classes, data_root=data_root, num_synthetic=num_synthetic, epochs=epochs,
        iters_per_epoch=iters_per_epoch,
        model=dict(decode_head=dict(num_classes=num_classes), **({"test_cfg": test_cfg} if test_cfg else {})),
        **{loader: dict(dataset=dict(data_root=data_root))
           for loader in ("train_dataloader", "val_dataloader", "test_dataloader")},
        train_cfg=dict(max_iters=epochs * iters_per_epoch, val_interval=iters_per_epoch),
        default_hooks=dict(checkpoint=dict(interval=iters_per_epoch)))


def data_root_options(data_root: str | Path) -> list[str]:
    """``--cfg-options`` entries pointing the train, val and test datasets at an export."""
    text = str(Path(data_root).expanduser().resolve())
    if any(ch in text for ch in ",[]()'\" "):
        # mmengine's DictAction would split or parse such a value; a symlink without them works.
        raise HisynError(f"export path {text!r} contains characters mmengine's --cfg-options cannot pass "
                         "(comma, brackets, quotes, spaces); use a symlink without them")
    return [f"{loader}.dataset.data_root={text}" for loader in ("train_dataloader", "val_dataloader", "test_dataloader")]


def load_mmseg_config(path: Path):  # noqa: ANN201 (mmengine Config)
    """An mmengine Config read without importing its custom modules; a broken file is one line."""
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


def config_with(path: Path, user: dict):  # noqa: ANN201 (mmengine Config)
    """The config as the stock script will see it: the file, then the user's --cfg-options."""
    cfg = load_mmseg_config(path)
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


def validation_options(cfg, data_root: str | None) -> tuple[list[str], list[str]]:  # noqa: ANN001
    """cfg-options and notes for validating on the export: with no real val masks the datasets
    validate on held-out synthetic images (``hisyngen.mmseg.datasets.synthetic_holdout``) and this
    says so; a config without a val loop needs nothing."""
    from hisyngen.mmseg.datasets import holdout_note

    if not cfg.get("val_dataloader") or not cfg.get("val_cfg"):
        return [], ["no validation (the config has no val loop)"]
    root = Path(data_root) if data_root else _dataset_root(cfg, "val_dataloader")
    note = holdout_note(root)
    return [], [note] if note else []


def require_masks(cfg, data_root: str | None, split: str) -> None:  # noqa: ANN001
    """Refuse, in one line, to evaluate on an export whose ``split`` has no images with masks."""
    from hisyngen.mmseg.datasets import no_masks_error, split_has_images

    root = Path(data_root) if data_root else _dataset_root(cfg, f"{split}_dataloader")
    if not split_has_images(root, split):
        raise no_masks_error(root, split)


def with_options(path: Path, options: Sequence[str], script_args: Iterable[str]) -> list[str]:
    """Script arguments with our --cfg-options BEFORE the user's: mmengine lets the last one win."""
    return [str(path), *(["--cfg-options", *options] if options else []), *script_args]


def tool_command(tool: str, args: Sequence[str], *, cfg_options: Sequence[str] = (), nproc: int = 1,
                 python: str | None = None) -> list[str]:
    """argv running mmseg's stock ``tools/<tool>.py`` with ``args``, our ``cfg_options`` appended
    (mmengine merges repeated ``--cfg-options``), under ``torch.distributed.run`` on this node when
    ``nproc`` > 1 (several nodes: call torchrun or tools/slurm_train.sh yourself)."""
    python = python or sys.executable
    script = str(stock_tool(tool))
    argv = list(args)
    if cfg_options:
        argv += ["--cfg-options", *cfg_options]
    if nproc > 1:
        if any(a == "--launcher" or a.startswith("--launcher=") for a in argv):
            raise HisynError("--gpus sets --launcher pytorch itself; do not pass --launcher")
        # --standalone: one node, a free rendezvous port (two jobs on one machine do not clash).
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", script, *argv,
                "--launcher", "pytorch"]
    return [python, script, *argv]

"""Where hisyngen's MMSegmentation configs and mmseg's stock scripts live (no heavy imports).

The configs ship inside the package (``hisyngen/mmseg_configs``, a symlink to the repository's
top-level ``mmseg_configs/`` that setuptools copies into wheels); the stock ``tools/train.py`` and
``tools/test.py`` ship inside the mmseg wheel (``mmseg/.mim/tools``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Sequence

from hisyngen.errors import HisynError

CONFIG_DIR = Path(__file__).resolve().parent / "mmseg_configs"


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


def data_root_options(data_root: str | Path) -> list[str]:
    """``--cfg-options`` entries pointing the train, val and test datasets at an export."""
    text = str(Path(data_root).expanduser().resolve())
    if any(ch in text for ch in ",[]()'\" "):
        # mmengine's DictAction would split or parse such a value; a symlink without them works.
        raise HisynError(f"export path {text!r} contains characters mmengine's --cfg-options cannot pass "
                         "(comma, brackets, quotes, spaces); use a symlink without them")
    return [f"{loader}.dataset.data_root={text}" for loader in ("train_dataloader", "val_dataloader", "test_dataloader")]


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

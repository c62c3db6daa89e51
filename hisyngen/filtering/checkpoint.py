"""Discriminator files: saving and loading trained discriminators, and the ``--init-from`` weights.

Every file is read with ``torch.load(weights_only=True)``: tensors and containers only, never code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from hisyngen.errors import HisynError
from hisyngen.filtering.model import Discriminator

MODEL_FORMAT = "hisyngen-discriminator"
MODEL_VERSION = 2
"""2: parameters named as torchvision's resnet18; version 1 files (``stem``/``stages``/``head``) still load."""


def _listed(keys: list[str], limit: int = 6) -> str:
    return f"{len(keys)} ({', '.join(keys[:limit])}{', ...' if len(keys) > limit else ''})"


def initial_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights a discriminator starts from with ``--init-from``: every tensor of ``path`` but ``fc``.

    ``path`` holds a state dict with torchvision's resnet18 names (its ImageNet checkpoint is one), on
    its own or under ``state_dict`` (a hisyngen discriminator; version-1 names are mapped). It is read
    with ``weights_only=True``: tensors and containers only, never code. The ``fc`` head is the
    task's own (2 classes, not ImageNet's 1,000) and keeps its seeded initialisation; missing
    ``num_batches_tracked`` counters are fine (torch fills them in; BatchNorm statistics are
    recalibrated every epoch). Anything else missing, extra or of another shape is refused in one line.
    """
    from hisyngen.filtering.model import upgrade_state_dict

    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or one holding objects (refused: unpickling runs code)
        raise HisynError(f"--init-from {path}: not a checkpoint torch.load(weights_only=True) reads "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise HisynError(f"--init-from {path}: not a state dict of tensors (torchvision's resnet18 checkpoint is one)")
    given = {k: v for k, v in upgrade_state_dict(data).items() if not k.startswith("fc.")}
    wanted = {k: v for k, v in Discriminator().state_dict().items() if not k.startswith("fc.")}
    missing = [k for k in wanted if k not in given and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in given if k not in wanted]
    shapes = [f"{k} {tuple(given[k].shape)} there, {tuple(v.shape)} here" for k, v in wanted.items()
              if k in given and given[k].shape != v.shape]
    if missing or unexpected or shapes:
        problems = ([f"missing {_listed(missing)}"] if missing else []) + \
                   ([f"unexpected {_listed(unexpected)}"] if unexpected else []) + \
                   ([f"other shapes {_listed(shapes, 3)}"] if shapes else [])
        raise HisynError(f"--init-from {path}: not ResNet-18 weights named as torchvision's resnet18: "
                         f"{'; '.join(problems)}")
    return given


def save_discriminator(path: str | Path, model: Discriminator, meta: dict[str, Any]) -> str:
    """Save weights + metadata (strategy, classes, image size, metrics); returns the file's sha256."""
    import io

    from hisyngen.imageio import atomic_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Via a buffer: torch names the zip's top folder after the file, so equal weights saved under
    # different names would differ in bytes.
    buffer = io.BytesIO()
    torch.save({"format": MODEL_FORMAT, "version": MODEL_VERSION, "meta": meta,
                "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return file_sha256(path)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_discriminator(path: str | Path, strategy: str | None = None, classes: tuple[str, ...] | None = None,
                       params: dict[str, Any] | None = None) -> tuple[Discriminator, dict[str, Any]]:
    """Load a saved discriminator; refuse one trained for another strategy, parameters or class list."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise HisynError(f"{path} does not exist (train one with `hisyngen filter-train`)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise HisynError(f"{path} is not a readable discriminator ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise HisynError(f"{path} is not a hisyngen discriminator")
    meta = data["meta"]
    if strategy is not None and meta.get("strategy") != strategy:
        raise HisynError(f"{path} was trained on {meta.get('strategy')} samples, not {strategy}: train one per strategy")
    if classes is not None and tuple(meta.get("classes", ())) != tuple(classes):
        raise HisynError(f"{path} was trained for classes {meta.get('classes')} ({len(meta.get('classes', []))}), "
                         f"not {list(classes)} ({len(classes)})")
    from hisyngen.synthesis.base import Strategy

    trained = meta.get("strategy_params")
    if trained is not None:  # models saved with every parameter: compare only those that shape samples
        trained = {k: v for k, v in trained.items() if k not in Strategy.NOT_SAMPLE_PARAMS}
    if params is not None and trained is not None and trained != params:
        diffs = ", ".join(f"{k}={trained.get(k)!r} there, {params.get(k)!r} here"
                          for k in sorted(set(trained) | set(params)) if trained.get(k) != params.get(k))
        raise HisynError(f"{path} was trained on {meta.get('strategy')} samples with other parameters ({diffs}); "
                         "train one for these parameters")
    model = Discriminator()
    try:
        model.load_state_dict(data["state_dict"])  # version-1 names are mapped by the model's load hook
    except (RuntimeError, KeyError, TypeError) as exc:
        raise HisynError(f"{path} holds weights of another network ({' '.join(str(exc).split())[:300]})") from None
    return model.eval(), meta

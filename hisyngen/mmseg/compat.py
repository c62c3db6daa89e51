"""Environment workarounds for MMSegmentation 1.2 / mmengine 0.10 on current torch and mmcv-lite.

Every workaround lives here, is applied once by :func:`apply` (called by ``hisyngen.mmseg`` before
anything imports ``mmseg.models``), and only changes behaviour in the situation it exists for:

1. ``mmcv._ext`` stub. mmseg imports ``mmcv.ops`` at import time, and ``mmcv.ops`` loads the
   compiled extension ``mmcv._ext``, which mmcv-lite does not ship (the full mmcv has no wheel for
   recent torch; see README "Dependencies"). DeepLabV3+, ResNet and ASPP use no compiled op, so a
   stub module is enough; calling any compiled op raises a clear RuntimeError instead of computing
   garbage. Registered only when ``mmcv._ext`` cannot be found, so a full mmcv install is untouched.
   Delete when mmseg stops importing ``mmcv.ops`` eagerly or mmcv publishes wheels for current torch.

2. Local checkpoint loader: ``weights_only=True`` with mmengine's own types allow-listed.
   mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; torch >= 2.6 then loads with
   ``weights_only=True``, which refuses mmengine's own checkpoints (the message hub pickles
   ``HistoryBuffer`` objects holding numpy arrays/scalars/dtypes and, via ``getattr``, their
   statistics methods), so ``--resume``, ``load_from`` and ``tools/test.py CONFIG CKPT`` fail.
   Unpickling with ``weights_only=False`` would run any code a downloaded ``.pth`` carries, so the
   replacement loader keeps ``weights_only=True`` and allow-lists exactly what a hisyngen/mmengine
   run saves (:func:`checkpoint_safe_globals`; ``getattr`` only as ``getattr(HistoryBuffer, name)``
   of a registered statistic). Anything else is refused with one line naming the opt-in:
   ``HISYNGEN_TRUST_CHECKPOINTS=1`` (``--trust-checkpoint`` on ``hisyngen train/test/
   pseudo-label``) loads with ``weights_only=False``, for files you trust. Delete when mmengine
   allow-lists its own types itself (mmengine > 0.10.7).

3. CPU distributed launch. mmengine's PyTorch launcher calls ``torch.cuda.set_device`` before
   ``init_process_group``, which raises on a CPU-only torch build, so ``--launcher pytorch`` with
   the gloo backend cannot start on a machine without CUDA (our 2-process CPU test, CPU CI). When
   CUDA is unavailable we initialise the process group without selecting a device. Delete when
   mmengine skips ``set_device`` without CUDA.

4. bf16 autocast training on CPU. mmengine 0.10.7's ``AmpOptimWrapper`` asserts CUDA (or NPU,
   MLU, MUSA) in its constructor, so ``optim_wrapper=dict(type='AmpOptimWrapper',
   dtype='bfloat16')`` cannot be built on a CPU, although mmengine's own ``autocast`` supports CPU
   bf16. :class:`BF16OptimWrapper` (registered as ``BF16OptimWrapper``, built by
   :func:`install_bf16_optim_wrapper`) is the plain ``OptimWrapper`` whose forward runs under
   ``autocast(dtype=bfloat16)`` on the model's device; bf16 has float32's exponent range, so no
   loss scaling. Works on CPU and CUDA; ``hisyngen train --precision bf16`` selects it, and with the
   stock script ``--cfg-options optim_wrapper.type=BF16OptimWrapper``. Validation and test stay
   float32. Delete when mmengine's ``AmpOptimWrapper`` accepts a CPU.

Not workarounds, but process-wide too: :func:`install_fetch_errors` turns a failed download of
pretrained weights (offline machine) into one line naming the URL, ``--no-pretrained`` and
``--pretrained FILE``; and :func:`install_one_line_errors` makes mmseg's stock
scripts (which import this plugin through ``custom_imports``) print a hisyngen error, such as a
refused checkpoint, as the one line ``error: MESSAGE`` the hisyngen CLI prints, not a traceback.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Any, Callable

from hisyngen.mmseg_launch import BF16_OPTIM_WRAPPER, TRUST_CHECKPOINTS_ENV as TRUST_ENV
from hisyngen.errors import HisynError
from hisyngen.extras import open_mmlab_url

_applied = False


class _MissingCompiledOps(types.ModuleType):
    """Stands in for ``mmcv._ext``: any attribute is a function that raises a clear error."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)

        def missing(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(
                f"mmcv compiled op {name!r} is not available with mmcv-lite; install the full mmcv "
                "(matching your torch/CUDA) to use a model that needs it"
            )

        missing.__name__ = name
        return missing


def install_mmcv_ext_stub() -> bool:
    """Register the ``mmcv._ext`` stub when the compiled extension is missing; True if installed."""
    if "mmcv._ext" in sys.modules:
        return isinstance(sys.modules["mmcv._ext"], _MissingCompiledOps)
    if importlib.util.find_spec("mmcv._ext") is not None:
        return False
    stub = _MissingCompiledOps("mmcv._ext", "hisyngen stub: mmcv-lite has no compiled ops")
    # A spec with no loader marks the module as synthetic; importlib and inspect accept it.
    stub.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)
    sys.modules["mmcv._ext"] = stub
    setattr(sys.modules["mmcv"], "_ext", stub)  # as the import system does for a loaded submodule
    return True




class UntrustedCheckpointError(HisynError):
    """A checkpoint holding objects a hisyngen/mmengine run does not save (refused unless trusted)."""


def trust_checkpoints() -> bool:
    """True when the user opted in to unpickling arbitrary objects from local checkpoints."""
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def _history_buffer_getattr(owner: Any, name: str) -> Any:
    """Stands in for ``builtins.getattr`` while unpickling: the message hub pickles each
    ``HistoryBuffer``'s statistics methods as ``getattr(HistoryBuffer, 'mean')``; any other use of
    ``getattr`` (a way to reach arbitrary attributes) is refused."""
    import pickle

    from mmengine.logging import HistoryBuffer

    # The defaults are registered on the class only when a first buffer is made, so name them here.
    allowed = {"min", "max", "current", "mean", *HistoryBuffer._statistics_methods}
    if owner is HistoryBuffer and isinstance(name, str) and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"GLOBAL builtins.getattr({getattr(owner, '__name__', type(owner).__name__)}, {name!r})")


def checkpoint_safe_globals() -> list[Any]:
    """What checkpoints saved by mmengine's Runner hold besides tensors and builtin containers
    (checked on the checkpoints of a hisyngen run: ``meta`` is plain data, ``message_hub`` holds
    ``HistoryBuffer`` objects with numpy arrays, scalars and dtypes), for ``add_safe_globals``."""
    import numpy as np
    from mmengine.logging import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    safe: list[Any] = [HistoryBuffer, np.ndarray, np.dtype, (_history_buffer_getattr, "builtins.getattr")]
    # numpy 2 pickles under numpy._core, numpy 1 under numpy.core: accept files from either.
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        safe += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles some dtypes by their class
    if dtypes is not None:
        safe += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType") and isinstance(getattr(dtypes, n), type)]
    return safe


def _refusal(filename: str, exc: Exception) -> UntrustedCheckpointError:
    import re

    found = re.search(r"GLOBAL ([\w.]+(?:\([^)]*\))?)", str(exc))
    what = found.group(1) if found else " ".join(str(exc).split())[:120]
    return UntrustedCheckpointError(
        f"{filename}: refused to load: it holds {what}, which checkpoints of hisyngen runs do not "
        f"(unpickling it could run code); if you trust the file, pass --trust-checkpoint or set {TRUST_ENV}=1")


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine's local-file checkpoint loader with ``weights_only=True`` and mmengine's own types
    allow-listed; ``weights_only=False`` only when :func:`trust_checkpoints`."""
    import pickle

    import torch

    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    if trust_checkpoints():
        return torch.load(filename, map_location=map_location, weights_only=False)
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(filename, exc) from None


def install_checkpoint_loader() -> None:
    """Allow-list mmengine's checkpoint types and replace mmengine's local-file scheme ('' prefix)
    by :func:`load_from_local`."""
    import torch
    from mmengine.runner.checkpoint import CheckpointLoader

    torch.serialization.add_safe_globals(checkpoint_safe_globals())
    CheckpointLoader.register_scheme(prefixes="", loader=load_from_local, force=True)


class PretrainedFetchError(HisynError):
    """Pretrained weights (an ImageNet backbone) that cannot be downloaded: offline, or no route."""


def _fetch_errors_in_one_line(loader: Callable[..., Any]) -> Callable[..., Any]:
    """A remote-scheme loader whose network failures (``URLError``, DNS, refused connections,
    timeouts: all ``OSError``) become one line naming the URL and the two ways out."""

    def load(filename: str, map_location: Any = None) -> Any:
        try:
            return loader(filename, map_location)
        except OSError as exc:
            reason = " ".join(str(getattr(exc, "reason", None) or exc).split())
            raise PretrainedFetchError(
                f"cannot download pretrained weights {open_mmlab_url(filename)} ({reason}); start from random "
                "weights with --no-pretrained, or pass --pretrained FILE with a local copy of these weights") from None

    load.__name__ = loader.__name__  # mmengine logs the backend from the name ("load_from_http")
    load.hisyngen = True  # type: ignore[attr-defined]
    return load


def install_fetch_errors() -> None:
    """Wrap every registered remote checkpoint scheme with :func:`_fetch_errors_in_one_line`."""
    from mmengine.runner.checkpoint import CheckpointLoader

    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if prefix and not getattr(loader, "hisyngen", False):
            CheckpointLoader._schemes[prefix] = _fetch_errors_in_one_line(loader)


BF16OptimWrapper: Any = None  # the class, once install_bf16_optim_wrapper has run


def install_bf16_optim_wrapper() -> Any:
    """Define and register ``BF16OptimWrapper`` in mmengine's root registry (found from mmseg's)."""
    global BF16OptimWrapper
    if BF16OptimWrapper is not None:
        return BF16OptimWrapper
    from contextlib import contextmanager

    import torch
    from mmengine.optim import OptimWrapper
    from mmengine.registry import OPTIM_WRAPPERS
    from mmengine.runner.amp import autocast

    class _BF16OptimWrapper(OptimWrapper):
        """``OptimWrapper`` running the forward pass (and loss) under bf16 autocast."""

        @contextmanager
        def optim_context(self, model: torch.nn.Module):  # noqa: ANN202
            device = next(model.parameters()).device.type
            with super().optim_context(model), autocast(device_type=device, dtype=torch.bfloat16):
                yield

    _BF16OptimWrapper.__name__ = _BF16OptimWrapper.__qualname__ = BF16_OPTIM_WRAPPER
    OPTIM_WRAPPERS.register_module(name=BF16_OPTIM_WRAPPER, module=_BF16OptimWrapper, force=True)
    BF16OptimWrapper = _BF16OptimWrapper
    return BF16OptimWrapper


def _init_dist_pytorch_cpu(backend: str, init_backend: str = "torch", **kwargs: Any) -> None:
    """mmengine's PyTorch launcher without ``torch.cuda.set_device`` (CPU-only machines)."""
    import torch.distributed as torch_dist

    if init_backend != "torch":
        raise RuntimeError(f"init_backend {init_backend!r} needs CUDA; only 'torch' works on CPU")
    torch_dist.init_process_group(backend=backend, **kwargs)


def install_cpu_dist_launcher() -> bool:
    """Use :func:`_init_dist_pytorch_cpu` for ``--launcher pytorch`` when CUDA is unavailable."""
    import torch

    if torch.cuda.is_available():
        return False
    import mmengine.dist.utils as dist_utils

    # init_dist looks the function up in its module at call time, so rebinding it is enough.
    dist_utils._init_dist_pytorch = _init_dist_pytorch_cpu
    return True


def install_one_line_errors() -> None:
    """``sys.excepthook`` printing an uncaught :class:`HisynError` as ``error: MESSAGE`` (exit
    status stays 1); other exceptions go to the previous hook, with their traceback."""
    previous = sys.excepthook
    if getattr(previous, "hisyngen", False):
        return

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if isinstance(value, HisynError):
            sys.stderr.write(f"error: {value}\n")
        else:
            previous(kind, value, tb)

    hook.hisyngen = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def apply() -> None:
    """Apply every workaround once (idempotent). Must run before ``mmseg.models`` is imported."""
    global _applied
    if _applied:
        return
    from hisyngen.extras import missing_openmmlab, openmmlab_hint

    missing = missing_openmmlab()
    if missing:  # the core install: say which extra, not "No module named 'mmcv'" from deep inside
        raise ImportError(openmmlab_hint("hisyngen.mmseg", missing), name=missing[0])
    install_mmcv_ext_stub()
    install_checkpoint_loader()
    install_fetch_errors()
    install_bf16_optim_wrapper()
    install_cpu_dist_launcher()
    install_one_line_errors()
    _applied = True

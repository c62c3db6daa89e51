"""Environment workarounds for MMSegmentation 1.2 / mmengine 0.10 on current torch and mmcv-lite.

Every workaround lives here, is applied once by :func:`apply` (called by ``hisyngen.mmseg`` before
anything imports ``mmseg.models``), and only changes behaviour in the situation it exists for:

1. ``mmcv._ext`` stub. mmseg imports ``mmcv.ops`` at import time, and ``mmcv.ops`` loads the
   compiled extension ``mmcv._ext``, which mmcv-lite does not ship (the full mmcv has no wheel for
   recent torch; see README "Dependencies"). DeepLabV3+, ResNet and ASPP use no compiled op, so a
   stub module is enough; calling any compiled op raises a clear RuntimeError instead of computing
   garbage. Registered only when ``mmcv._ext`` cannot be found, so a full mmcv install is untouched.
   Delete when mmseg stops importing ``mmcv.ops`` eagerly or mmcv publishes wheels for current torch.

2. Local checkpoint loader with ``weights_only=False``. torch >= 2.6 defaults
   ``torch.load(weights_only=True)``, which refuses mmengine's own checkpoints (they pickle the
   message hub, numpy scalars, config objects), so ``--resume``, ``load_from`` and
   ``tools/test.py CONFIG CKPT`` fail. mmengine's loader registry lets us replace the local-file
   scheme; the replacement passes ``weights_only=False``, i.e. it trusts the file like torch < 2.6
   did. Only load checkpoints you produced or trust. Delete when mmengine passes ``weights_only``
   itself (mmengine > 0.10.7).

3. CPU distributed launch. mmengine's PyTorch launcher calls ``torch.cuda.set_device`` before
   ``init_process_group``, which raises on a CPU-only torch build, so ``--launcher pytorch`` with
   the gloo backend cannot start on a machine without CUDA (our 2-process CPU test, CPU CI). When
   CUDA is unavailable we initialise the process group without selecting a device. Delete when
   mmengine skips ``set_device`` without CUDA.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Any, Callable

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


def load_from_local_trusted(filename: str, map_location: Any = None) -> Any:
    """mmengine's local-file checkpoint loader, with ``weights_only=False`` (trusted files only)."""
    import torch

    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    return torch.load(filename, map_location=map_location, weights_only=False)


def install_checkpoint_loader() -> None:
    """Replace mmengine's local-file scheme ('' prefix) by :func:`load_from_local_trusted`."""
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=load_from_local_trusted, force=True)


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


def apply() -> None:
    """Apply every workaround once (idempotent). Must run before ``mmseg.models`` is imported."""
    global _applied
    if _applied:
        return
    install_mmcv_ext_stub()
    install_checkpoint_loader()
    install_cpu_dist_launcher()
    _applied = True

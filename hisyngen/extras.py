"""Optional dependencies: what the OpenMMLab extras are for, and the one line a command gives without them.

The core install (synthesis, filter, realism, export, push, build, demo) needs no OpenMMLab
package. Training and evaluating DeepLabV3+ (``hisyngen train``, ``test``, ``pseudo-label``, the
``hisyngen.mmseg`` plugin) needs MMSegmentation, mmengine and an ``mmcv``: the ``mmseg-cpu`` extra
brings mmcv-lite; the ``mmseg`` extra brings no mmcv at all, so a GPU environment keeps (or gets,
as OpenMMLab documents) the full mmcv with its CUDA ops instead of having mmcv-lite, which installs
the same top-level ``mmcv`` package, land on top of it.
"""

from __future__ import annotations

import importlib.util

from hisyngen.errors import HisynError

OPENMMLAB = ("mmseg", "mmengine", "mmcv")
"""Import names of the OpenMMLab packages the training commands need."""

OPENMMLAB_INSTALL = ("pip install 'hisyngen[mmseg-cpu]' on a CPU (with mmcv-lite), or 'hisyngen[mmseg]' plus the "
                     "full mmcv for your torch/CUDA (README, Dependencies)")
"""How to get them, in the words every message uses."""


class MissingExtraError(HisynError):
    """A command needs an optional dependency that is not installed."""


def open_mmlab_url(name: str) -> str:
    """The URL an ``open-mmlab://NAME`` (or ``openmmlab://NAME``) alias of a config's weights downloads,
    from the model list mmengine ships; ``name`` itself when it is no alias or does not resolve (no
    mmengine, a broken list: the alias still says what was wanted). Imports mmengine only for an alias."""
    for prefix in ("open-mmlab://", "openmmlab://"):
        if name.startswith(prefix):
            try:
                from mmengine.runner.checkpoint import get_external_models  # a JSON file shipped with mmengine

                return get_external_models().get(name[len(prefix):], name)
            except Exception:  # noqa: BLE001  (see above)
                return name
    return name


def missing_openmmlab() -> list[str]:
    """The OpenMMLab packages that cannot be imported here (without importing them: mmseg is slow)."""
    missing = []
    for name in OPENMMLAB:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a finder refusing the name; a module with no spec
            found = False
        if not found:
            missing.append(name)
    return missing


def openmmlab_hint(what: str, missing: list[str]) -> str:
    """One line: ``what`` needs the packages ``missing`` and which extra provides them."""
    return f"{what} needs MMSegmentation ({', '.join(missing)} not installed): {OPENMMLAB_INSTALL}"


def require_openmmlab(what: str) -> None:
    """Raise :class:`MissingExtraError` (one line naming the extra) unless the OpenMMLab stack is there."""
    missing = missing_openmmlab()
    if missing:
        raise MissingExtraError(openmmlab_hint(what, missing))

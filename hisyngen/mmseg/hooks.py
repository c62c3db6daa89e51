"""``EvalStrideHook``: different sliding-window strides for validation and test.

mmseg keeps one ``model.test_cfg`` for both loops, but SPEC.md section 7 validates WSSS4LUAD with
stride 224 (fast, for checkpoint selection) and tests with stride 112.
"""

from __future__ import annotations

from typing import Sequence

from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class EvalStrideHook(Hook):
    """Set ``model.test_cfg.stride`` to ``val_stride`` before validation, ``test_stride`` before test."""

    def __init__(self, val_stride: Sequence[int] | None = None, test_stride: Sequence[int] | None = None) -> None:
        self.val_stride = tuple(val_stride) if val_stride else None
        self.test_stride = tuple(test_stride) if test_stride else None

    @staticmethod
    def _set(runner, stride: tuple[int, ...] | None) -> None:
        if stride is None:
            return
        model = runner.model
        while hasattr(model, "module"):  # DDP wrapper, SegTTAModel
            model = model.module
        model.test_cfg.stride = stride

    def before_val(self, runner) -> None:
        self._set(runner, self.val_stride)

    def before_test(self, runner) -> None:
        self._set(runner, self.test_stride)

"""``EvalStrideHook``: different sliding-window strides for validation and test.

mmseg keeps one ``model.test_cfg`` for both loops, but the paper (docs/method.md, Training: Evaluation) validates WSSS4LUAD with
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


@HOOKS.register_module()
class DistTeardownHook(Hook):
    """Destroy the process group at the end of a distributed run, after a barrier.

    Without it a gloo run leaves the process group to interpreter shutdown: one rank exits while
    the other still holds their TCP pairs and gloo's worker threads are still alive when the C++
    runtime tears down, which aborts that rank now and then (``terminate called without an active
    exception``, exit -6, after the last checkpoint). The barrier lets every rank finish its last
    collective first; ``destroy_process_group`` then joins gloo's threads in order.
    """

    priority = "LOWEST"  # after every other hook's after_run (loggers, checkpoints)

    def after_run(self, runner) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

"""The three HisynSeg losses (docs/method.md#training), as plain functions and registered modules.

- :func:`multiclass_dice_loss` (L_seg): 1 - mean over classes of the soft Dice of each class,
  aggregated over all valid pixels of the batch (pixels equal to ``ignore_index`` are dropped from
  both prediction and target). **Classes absent from the batch's valid targets are left out of the
  mean**: their Dice is 0 / (predicted mass), which would punish the batch composition rather than
  the prediction; their false positives are still penalised, because the softmax takes that
  probability away from the present classes. A batch with no valid pixel gives 0.
- :func:`multilabel_soft_margin_loss` (L_cls): ``torch.nn.MultiLabelSoftMarginLoss`` on the CAM
  logits z (mean over classes, then over samples).
- :func:`cam_consistency_loss` (L_reg): mean L1 between ``softmax(F_c)`` and the softmax of the
  segmentation logits bilinearly resized to F_c's size; no stop-gradient, so it trains both
  branches.

The head chooses which samples each loss sees (L_seg synthetic, L_reg real); the functions take
whatever batch they are given.
"""

from __future__ import annotations

import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor, nn

from hisyngen.spec import IGNORE_INDEX


def multiclass_dice_loss(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Multi-class soft Dice loss. ``logits`` (N, C, H, W), ``target`` (N, H, W) class indices."""
    num_classes = logits.shape[1]
    valid = target != ignore_index
    if not valid.any():
        return logits.sum() * 0.0  # keeps the graph (DDP needs every parameter to get a gradient)
    probs = logits.softmax(dim=1).permute(0, 2, 3, 1)[valid]  # (P, C) over valid pixels
    labels = target[valid].long()
    if int(labels.max()) >= num_classes or int(labels.min()) < 0:
        raise ValueError(f"target holds class {int(labels.max())} but the model has {num_classes} classes")
    onehot = F.one_hot(labels, num_classes).to(probs.dtype)
    intersection = (probs * onehot).sum(dim=0)
    denominator = probs.sum(dim=0) + onehot.sum(dim=0)
    present = onehot.sum(dim=0) > 0
    dice = 2 * intersection[present] / denominator[present]
    return 1 - dice.mean()


def multilabel_soft_margin_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Multi-label soft-margin loss: mean over samples and classes of the logistic loss of z."""
    return F.multilabel_soft_margin_loss(logits, labels.to(logits.dtype))


def cam_consistency_loss(cams: Tensor, seg_logits: Tensor, align_corners: bool = False) -> Tensor:
    """Mean |softmax(cams) - softmax(resize(seg_logits, cams' size))|; (N, C, h, w) vs (N, C, H, W)."""
    if cams.shape[0] == 0:
        return cams.sum() * 0.0 + seg_logits.sum() * 0.0
    seg = F.interpolate(seg_logits, size=cams.shape[2:], mode="bilinear", align_corners=align_corners)
    return (cams.softmax(dim=1) - seg.softmax(dim=1)).abs().mean()


class _WeightedLoss(nn.Module):
    """Base of the registered losses: a weight and the mmengine log name (``loss_`` prefix)."""

    default_name = "loss"

    def __init__(self, loss_weight: float = 1.0, loss_name: str | None = None) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self._loss_name = loss_name or self.default_name
        if not self._loss_name.startswith("loss_"):
            raise ValueError(f"loss_name {self._loss_name!r} must start with 'loss_' so mmengine backpropagates it")

    @property
    def loss_name(self) -> str:
        return self._loss_name


@MODELS.register_module()
class MultiClassDiceLoss(_WeightedLoss):
    """L_seg (:func:`multiclass_dice_loss`) x ``loss_weight``; mmseg decode-loss call signature."""

    default_name = "loss_seg"

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None,
                ignore_index: int = IGNORE_INDEX, **kwargs: object) -> Tensor:
        if weight is not None:
            raise ValueError("MultiClassDiceLoss does not support pixel weights (sampler)")
        return self.loss_weight * multiclass_dice_loss(logits, target, ignore_index)


@MODELS.register_module()
class MultiLabelSoftMarginClsLoss(_WeightedLoss):
    """L_cls (:func:`multilabel_soft_margin_loss`) x ``loss_weight``."""

    default_name = "loss_cls"

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return self.loss_weight * multilabel_soft_margin_loss(logits, labels)


@MODELS.register_module()
class CAMConsistencyLoss(_WeightedLoss):
    """L_reg (:func:`cam_consistency_loss`) x ``loss_weight``."""

    default_name = "loss_reg"

    def forward(self, cams: Tensor, seg_logits: Tensor, align_corners: bool = False) -> Tensor:
        return self.loss_weight * cam_consistency_loss(cams, seg_logits, align_corners)


__all__ = ["multiclass_dice_loss", "multilabel_soft_margin_loss", "cam_consistency_loss",
           "MultiClassDiceLoss", "MultiLabelSoftMarginClsLoss", "CAMConsistencyLoss"]

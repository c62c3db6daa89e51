"""DeepLabV3+ decode head with HisynSeg's auxiliary CAM classifier and consistency losses.

``CAMConsistencyHead`` is mmseg's ``DepthwiseSeparableASPPHead`` plus a CAM branch on the same
deepest backbone stage the ASPP reads (``in_index``): Dropout(0.5) + 1x1 conv -> C activation maps
F_c, whose global average pool gives the image-level logits z. Training losses (docs/method.md#training):

- ``loss_seg`` (``loss_decode``, Dice): samples with a mask, i.e. synthetic ones; real ones too
  when ``seg_on_real=True`` (stage 2, real images with pseudo masks).
- ``loss_cls`` (``loss_cls``, multi-label soft margin on z): every sample, with its
  ``img_labels`` (synthetic labels recomputed after augmentation).
- ``loss_reg`` (``loss_reg``, CAM/segmentation L1): real samples only; ``loss_reg=None`` turns it
  off (stage 2).

``forward``/``predict`` are the stock ones: inference returns segmentation logits only.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from mmseg.models.decode_heads import DepthwiseSeparableASPPHead
from mmseg.models.losses import accuracy
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class CAMConsistencyHead(DepthwiseSeparableASPPHead):
    """``DepthwiseSeparableASPPHead`` + CAM classifier + L_seg / L_cls / L_reg.

    Args:
        cam_dropout: dropout before the CAM 1x1 conv (paper: 0.5).
        loss_decode: L_seg config (default ``MultiClassDiceLoss``, logged as ``loss_seg``).
        loss_cls: L_cls config (default ``MultiLabelSoftMarginClsLoss``, ``loss_cls``).
        loss_reg: L_reg config (default ``CAMConsistencyLoss``, ``loss_reg``), or None.
        seg_on_real: apply L_seg to real samples too (stage 2: they carry pseudo masks).
        **kwargs: ``DepthwiseSeparableASPPHead`` arguments (in_channels, c1_in_channels, ...).
    """

    def __init__(self, *, cam_dropout: float = 0.5,
                 loss_decode: dict | Sequence[dict] = dict(type="MultiClassDiceLoss", loss_weight=1.0),
                 loss_cls: dict = dict(type="MultiLabelSoftMarginClsLoss", loss_weight=1.0),
                 loss_reg: dict | None = dict(type="CAMConsistencyLoss", loss_weight=1.0),
                 seg_on_real: bool = False, **kwargs: Any) -> None:
        super().__init__(loss_decode=loss_decode, **kwargs)
        self.cam_dropout = nn.Dropout(cam_dropout) if cam_dropout > 0 else nn.Identity()  # element-wise, as the paper (docs/method.md, Training)
        self.cam_conv = nn.Conv2d(self.in_channels, self.num_classes, kernel_size=1)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_reg = MODELS.build(loss_reg) if loss_reg is not None else None
        self.seg_on_real = seg_on_real
        names = [loss.loss_name for loss in self._decode_losses()] + [self.loss_cls.loss_name]
        if self.loss_reg is not None:
            names.append(self.loss_reg.loss_name)
        if len(set(names)) != len(names):
            raise ValueError(f"loss names must be distinct so each is logged, got {names}")

    def _decode_losses(self) -> list[nn.Module]:
        return list(self.loss_decode) if isinstance(self.loss_decode, nn.ModuleList) else [self.loss_decode]

    def forward_cam(self, inputs: Sequence[Tensor]) -> Tensor:
        """CAM activation maps F_c (N, C, h, w) from the deepest stage."""
        return self.cam_conv(self.cam_dropout(self._transform_inputs(inputs)))

    def loss(self, inputs: Sequence[Tensor], batch_data_samples: list, train_cfg: Any) -> dict:
        """Training losses of one batch (mmseg ``BaseDecodeHead.loss`` signature)."""
        seg_logits = self.forward(inputs)
        cams = self.forward_cam(inputs)
        return self.loss_by_outputs(seg_logits, cams, batch_data_samples)

    def loss_by_outputs(self, seg_logits: Tensor, cams: Tensor, batch_data_samples: list) -> dict:
        """L_seg, L_cls, L_reg (and ``acc_seg``) from head outputs and the batch's samples."""
        labels, synthetic = _image_labels(batch_data_samples, self.num_classes, seg_logits.device)
        losses: dict[str, Tensor] = {}

        # L_seg on samples that carry a mask; others contribute nothing (not even to the class sums).
        seg_rows = torch.ones_like(synthetic) if self.seg_on_real else synthetic
        target = self._stack_batch_gt(batch_data_samples).squeeze(1)
        full = resize(seg_logits, size=target.shape[1:], mode="bilinear", align_corners=self.align_corners)
        for loss_decode in self._decode_losses():
            losses[loss_decode.loss_name] = loss_decode(full[seg_rows], target[seg_rows],
                                                        ignore_index=self.ignore_index)
        if seg_rows.any():
            losses["acc_seg"] = accuracy(full[seg_rows], target[seg_rows], ignore_index=self.ignore_index)

        # L_cls on every sample: z = GAP(F_c).
        losses[self.loss_cls.loss_name] = self.loss_cls(cams.mean(dim=(2, 3)), labels)

        # L_reg on real samples, against the segmentation logits at stride 4 (before upsampling).
        if self.loss_reg is not None:
            real = ~synthetic
            losses[self.loss_reg.loss_name] = self.loss_reg(cams[real], seg_logits[real], self.align_corners)
        return losses


def _image_labels(samples: list, num_classes: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(N, C) float image labels and (N,) bool is_synthetic from the samples' metainfo."""
    labels, synthetic = [], []
    for sample in samples:
        meta = sample.metainfo
        if "img_labels" not in meta or "is_synthetic" not in meta:
            raise KeyError("CAMConsistencyHead needs 'img_labels' and 'is_synthetic' in each sample's metainfo: "
                           "add them to PackSegInputs(meta_keys=...) and train on HisynMixedDataset")
        labels.append(torch.as_tensor(meta["img_labels"], dtype=torch.float32))
        synthetic.append(bool(meta["is_synthetic"]))
    stacked = torch.stack(labels).to(device)
    if stacked.shape[1] != num_classes:
        raise ValueError(f"img_labels have {stacked.shape[1]} classes but the head has {num_classes}")
    return stacked, torch.tensor(synthetic, dtype=torch.bool, device=device)

"""``EncoderDecoder`` with the evaluation protocol of docs/method.md, Training: Evaluation.

Two differences from mmseg's ``EncoderDecoder``, both at inference only (training is untouched):

- sliding-window inference averages *probabilities* over overlapping windows (stock mmseg averages
  logits) and returns their log, so a later softmax (``SegTTAModel`` averaging scales and flips)
  recovers exactly the window-averaged probabilities;
- predictions of ``Rot90``-rotated test views are rotated back before the stock post-processing
  (which undoes flips and resizing), so the TTA pipeline can average all 8 flips/rotations.
"""

from __future__ import annotations

from typing import Iterator

import torch
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from torch import Tensor


def sliding_windows(height: int, width: int, crop: tuple[int, int],
                    stride: tuple[int, int]) -> Iterator[tuple[int, int, int, int]]:
    """(y1, x1, y2, x2) windows covering the image, the last row/column flush with the border
    (mmseg's layout); a side smaller than the crop is one window of that side."""
    (h_crop, w_crop), (h_stride, w_stride) = crop, stride
    rows = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
    cols = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
    for row in range(rows):
        for col in range(cols):
            y2 = min(row * h_stride + h_crop, height)
            x2 = min(col * w_stride + w_crop, width)
            yield max(y2 - h_crop, 0), max(x2 - w_crop, 0), y2, x2


@MODELS.register_module()
class HisynEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` averaging window probabilities and undoing ``Rot90`` test views."""

    def slide_inference(self, inputs: Tensor, batch_img_metas: list[dict]) -> Tensor:
        """Log of the window-averaged softmax probabilities, (N, C, H, W)."""
        crop = tuple(self.test_cfg.crop_size)
        stride = tuple(self.test_cfg.stride)
        batch, _, height, width = inputs.shape
        probs = inputs.new_zeros((batch, self.out_channels, height, width))
        counts = inputs.new_zeros((batch, 1, height, width))
        for y1, x1, y2, x2 in sliding_windows(height, width, crop, stride):
            window = inputs[:, :, y1:y2, x1:x2]
            batch_img_metas[0]["img_shape"] = window.shape[2:]  # the head resizes its output to this
            probs[:, :, y1:y2, x1:x2] += self.encode_decode(window, batch_img_metas).softmax(dim=1)
            counts[:, :, y1:y2, x1:x2] += 1
        return (probs / counts).clamp_min(torch.finfo(probs.dtype).tiny).log()

    def postprocess_result(self, seg_logits: Tensor, data_samples: list | None = None) -> list:
        if data_samples:
            turns = {int(sample.metainfo.get("rot90", 0)) % 4 for sample in data_samples}
            if len(turns) > 1:
                raise ValueError(f"a test batch mixes Rot90 views {sorted(turns)}")
            k = turns.pop()
            if k:
                for sample in data_samples:
                    if any(sample.metainfo.get("padding_size", (0, 0, 0, 0))):
                        raise ValueError("Rot90 test views cannot be padded (drop size/size_divisor from the "
                                         "test data_preprocessor)")
                # The pipeline rotated after flipping, so rotate back first; the stock code unflips.
                seg_logits = torch.rot90(seg_logits, -k, dims=(2, 3))
        return super().postprocess_result(seg_logits, data_samples)

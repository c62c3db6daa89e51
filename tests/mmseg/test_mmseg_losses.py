"""L_seg / L_cls / L_reg against hand-computed values, and the head's routing of samples to losses."""

import math

import pytest
import torch
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

import hisyngen.mmseg  # noqa: F401  (compat + registration)
from hisyngen.mmseg.heads import CAMConsistencyHead
from hisyngen.mmseg.losses import cam_consistency_loss, multiclass_dice_loss, multilabel_soft_margin_loss

LN3 = math.log(3.0)


# ---- L_seg: multi-class Dice ------------------------------------------------------------------

def test_dice_hand_computed_with_ignored_pixel():
    # 1x3 image, 2 classes. Pixel probabilities: [.5,.5] (target 0), [.75,.25] (target 1), third ignored.
    logits = torch.tensor([[[[0.0, LN3, 9.0]], [[0.0, 0.0, -9.0]]]])
    target = torch.tensor([[[0, 1, 255]]])
    # class 0: 2*0.5 / (0.5+0.75 + 1) ; class 1: 2*0.25 / (0.5+0.25 + 1)
    expected = 1 - (2 * 0.5 / 2.25 + 2 * 0.25 / 1.75) / 2
    assert multiclass_dice_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_dice_aggregates_each_class_over_the_batch_not_per_image():
    # Same two pixels as above, but in two images: per-class sums over the batch give the same value.
    logits = torch.tensor([[[[0.0]], [[0.0]]], [[[LN3]], [[0.0]]]])
    target = torch.tensor([[[0]], [[1]]])
    expected = 1 - (2 * 0.5 / 2.25 + 2 * 0.25 / 1.75) / 2
    assert multiclass_dice_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_dice_leaves_classes_absent_from_targets_out_of_the_mean():
    # 3 classes, uniform probabilities, both pixels class 0: only class 0 counts.
    logits = torch.zeros(1, 3, 1, 2)
    target = torch.tensor([[[0, 0]]])
    dice0 = 2 * (2 / 3) / (2 / 3 + 2)  # = 0.5
    assert multiclass_dice_loss(logits, target).item() == pytest.approx(1 - dice0, abs=1e-6)
    # (including the absent classes with Dice 0 would give 1 - 0.5/3 = 0.833)


def test_dice_all_ignored_is_zero_and_keeps_the_graph():
    logits = torch.randn(1, 2, 2, 2, requires_grad=True)
    loss = multiclass_dice_loss(logits, torch.full((1, 2, 2), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_dice_rejects_target_beyond_classes():
    with pytest.raises(ValueError, match="class 3"):
        multiclass_dice_loss(torch.zeros(1, 2, 1, 1), torch.tensor([[[3]]]))


# ---- L_cls: multi-label soft margin -----------------------------------------------------------

def test_soft_margin_hand_computed():
    z = torch.tensor([[0.0, LN3], [2.0, -1.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    first = (math.log(2) + math.log(4)) / 2  # -log sig(0), -log(1 - sig(ln 3)) = -log(1/4)
    second = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2
    assert multilabel_soft_margin_loss(z, y).item() == pytest.approx((first + second) / 2, abs=1e-6)


# ---- L_reg: CAM / segmentation consistency ----------------------------------------------------

def test_consistency_same_size_hand_computed():
    cams = torch.tensor([[[[0.0, LN3]], [[0.0, 0.0]]]])  # softmax: [.5,.5], [.75,.25]
    seg = torch.tensor([[[[LN3, 0.0]], [[0.0, 0.0]]]])  # softmax: [.75,.25], [.5,.5]
    assert cam_consistency_loss(cams, seg).item() == pytest.approx(0.25, abs=1e-6)


def test_consistency_resizes_logits_before_softmax():
    # 2x2 seg logits -> 1x1 CAM size: bilinear (align_corners=False) takes the mean logit, 1 vs 0.
    cams = torch.zeros(1, 2, 1, 1)
    seg = torch.zeros(1, 2, 2, 2)
    seg[0, 0] = torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    p = math.e / (math.e + 1)  # softmax([1, 0])[0]
    assert cam_consistency_loss(cams, seg).item() == pytest.approx(p - 0.5, abs=1e-6)
    # (softmax-then-resize would give mean(.5, .881, .881, .5) - .5 = .19)


# ---- the head ---------------------------------------------------------------------------------

C = 3


def make_head(**kwargs) -> CAMConsistencyHead:
    torch.manual_seed(0)
    head = CAMConsistencyHead(in_channels=8, in_index=1, channels=8, dilations=(1, 2), c1_in_channels=4,
                              c1_channels=4, num_classes=C, dropout_ratio=0.0, cam_dropout=0.0, **kwargs)
    return head


def features(n: int = 4) -> list[torch.Tensor]:
    torch.manual_seed(1)
    return [torch.randn(n, 4, 16, 16), torch.randn(n, 8, 8, 8)]


def samples(synthetic: list[bool], size: int = 32) -> list[SegDataSample]:
    out = []
    for i, syn in enumerate(synthetic):
        sample = SegDataSample()
        mask = torch.full((1, size, size), 255, dtype=torch.long)
        if syn:
            mask[0, :, : size // 2] = i % C
            mask[0, :, size // 2:] = (i + 1) % C
        sample.gt_sem_seg = PixelData(data=mask)
        labels = [0] * C
        labels[i % C] = 1
        sample.set_metainfo(dict(img_labels=labels, is_synthetic=syn, img_shape=(size, size), pad_shape=(size, size)))
        out.append(sample)
    return out


def test_head_logs_three_distinct_losses():
    head = make_head()
    losses = head.loss(features(), samples([True, True, False, False]), None)
    assert {"loss_seg", "loss_cls", "loss_reg"} <= set(losses)
    assert all(torch.isfinite(losses[k]) for k in ("loss_seg", "loss_cls", "loss_reg"))


def test_head_rejects_duplicate_loss_names():
    with pytest.raises(ValueError, match="distinct"):
        make_head(loss_cls=dict(type="MultiLabelSoftMarginClsLoss", loss_name="loss_seg"))


def test_l_reg_gradients_reach_cam_and_segmentation_branches():
    head = make_head(loss_decode=dict(type="MultiClassDiceLoss", loss_weight=0.0),
                     loss_cls=dict(type="MultiLabelSoftMarginClsLoss", loss_weight=0.0))
    losses = head.loss(features(), samples([True, True, False, False]), None)
    (losses["loss_seg"] + losses["loss_cls"] + losses["loss_reg"]).backward()
    assert head.cam_conv.weight.grad.abs().sum() > 0  # CAM branch
    assert head.conv_seg.weight.grad.abs().sum() > 0  # segmentation branch (no stop-gradient)
    assert head.sep_bottleneck[0].depthwise_conv.conv.weight.grad.abs().sum() > 0


def test_l_reg_ignores_synthetic_samples_and_l_seg_ignores_real_ones():
    head = make_head()
    batch = samples([True, True, False, False])
    torch.manual_seed(2)
    seg = torch.randn(4, C, 8, 8)
    cams = torch.randn(4, C, 4, 4)
    base = head.loss_by_outputs(seg, cams, batch)

    cams_syn = cams.clone()
    cams_syn[0] += 5 * torch.randn(C, 4, 4)  # a synthetic sample's CAM
    assert head.loss_by_outputs(seg, cams_syn, batch)["loss_reg"].item() == pytest.approx(base["loss_reg"].item())
    cams_real = cams.clone()
    cams_real[2] += 5 * torch.randn(C, 4, 4)  # a real sample's CAM: L_reg must move
    assert head.loss_by_outputs(seg, cams_real, batch)["loss_reg"].item() != pytest.approx(base["loss_reg"].item())

    seg_real = seg.clone()
    seg_real[3] += 5 * torch.randn(C, 8, 8)  # a real sample's prediction
    batch_real = samples([True, True, False, False])
    batch_real[3].gt_sem_seg = PixelData(data=torch.zeros(1, 32, 32, dtype=torch.long))  # and a real target
    assert head.loss_by_outputs(seg_real, cams, batch_real)["loss_seg"].item() == pytest.approx(base["loss_seg"].item())
    seg_syn = seg.clone()
    seg_syn[1] += 5 * torch.randn(C, 8, 8)  # a synthetic prediction: L_seg must move
    assert head.loss_by_outputs(seg_syn, cams, batch)["loss_seg"].item() != pytest.approx(base["loss_seg"].item())


def test_l_cls_uses_every_sample_and_its_labels():
    head = make_head()
    batch = samples([True, False])
    seg, cams = torch.zeros(2, C, 8, 8), torch.zeros(2, C, 4, 4)
    cams[1, 0] = 2.0  # real sample 1: z = [2, 0, 0], labels [0, 1, 0]
    z = cams.mean(dim=(2, 3))
    labels = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    expected = multilabel_soft_margin_loss(z, labels)
    assert head.loss_by_outputs(seg, cams, batch)["loss_cls"].item() == pytest.approx(expected.item())
    # by hand for the real sample: classes (y=0, z=2), (y=1, z=0), (y=0, z=0)
    real = (math.log(1 + math.exp(2)) + math.log(2) + math.log(2)) / 3
    synthetic = (math.log(2) * 3) / 3
    assert expected.item() == pytest.approx((real + synthetic) / 2, abs=1e-6)


def test_stage2_seg_on_real_and_no_l_reg():
    head = make_head(loss_reg=None, seg_on_real=True)
    batch = samples([True, False])
    batch[1].gt_sem_seg = PixelData(data=torch.zeros(1, 32, 32, dtype=torch.long))
    seg, cams = torch.zeros(2, C, 8, 8), torch.zeros(2, C, 4, 4)
    base = head.loss_by_outputs(seg, cams, batch)
    assert "loss_reg" not in base
    seg_real = seg.clone()
    seg_real[1, 0] += 3.0
    assert head.loss_by_outputs(seg_real, cams, batch)["loss_seg"].item() != pytest.approx(base["loss_seg"].item())


def test_head_requires_labels_in_metainfo():
    head = make_head()
    batch = samples([True])
    bare = SegDataSample(metainfo=dict(img_shape=(32, 32), is_synthetic=True))
    bare.gt_sem_seg = batch[0].gt_sem_seg
    batch = [bare]
    with pytest.raises(KeyError, match="meta_keys"):
        head.loss(features(1), batch, None)


def test_inference_returns_segmentation_logits_only():
    head = make_head().eval()
    feats = features(2)
    metas = [dict(img_shape=(32, 32), pad_shape=(32, 32))] * 2
    out = head.predict(feats, metas, None)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, C, 32, 32)
    expected = torch.nn.functional.interpolate(head.forward(feats), size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(out, expected)

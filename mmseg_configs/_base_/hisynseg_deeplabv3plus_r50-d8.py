# DeepLabV3+ R50-D8 (ImageNet init) with HisynSeg's CAM-consistency decode head (docs/method.md, Training): mmseg's
# stock model (backbone, ASPP and its settings, SyncBN, preprocessing) with what HisynSeg changes.
# num_classes is set by each dataset config from hisyngen.spec (one place per fact).
#
# Offline / no ImageNet weights: add `--cfg-options model.pretrained=None`
# (or `hisyngen train CONFIG --no-pretrained`).
_base_ = ['mmseg::_base_/models/deeplabv3plus_r50-d8.py']

data_preprocessor = dict(size=(224, 224))  # pads val/test batches like the 224 training crops
model = dict(
    type='HisynEncoderDecoder',  # + rotation TTA and flush sliding windows (hisyngen/mmseg/segmentors.py)
    data_preprocessor=data_preprocessor,
    decode_head=dict(
        type='CAMConsistencyHead',  # DepthwiseSeparableASPPHead + the CAM classifier
        num_classes=None,
        cam_dropout=0.5,
        # L = L_seg + L_cls + L_reg, all weights 1 (paper: robust over 0.1-10).
        loss_decode=dict(_delete_=True, type='MultiClassDiceLoss', loss_weight=1.0),
        loss_cls=dict(type='MultiLabelSoftMarginClsLoss', loss_weight=1.0),
        loss_reg=dict(type='CAMConsistencyLoss', loss_weight=1.0)),
    auxiliary_head=None)  # the stock FCN auxiliary head is not part of HisynSeg

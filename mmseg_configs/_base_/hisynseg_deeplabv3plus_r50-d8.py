# DeepLabV3+ R50-D8 (ImageNet init) with HisynSeg's CAM-consistency decode head (SPEC.md s6).
# num_classes is set by each dataset config from hisyngen.spec (one place per fact).
#
# Offline / no ImageNet weights: add `--cfg-options model.pretrained=None`
# (or `hisyngen train CONFIG --no-pretrained`).
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(224, 224))
model = dict(
    type='HisynEncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet50_v1c',
    backbone=dict(
        type='ResNetV1c',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True),
    decode_head=dict(
        type='CAMConsistencyHead',
        in_channels=2048,
        in_index=3,  # deepest stage: the ASPP and the CAM classifier both read it
        channels=512,
        dilations=(1, 12, 24, 36),
        c1_in_channels=256,
        c1_channels=48,
        dropout_ratio=0.1,
        num_classes=None,
        norm_cfg=norm_cfg,
        align_corners=False,
        cam_dropout=0.5,
        # L = L_seg + L_cls + L_reg, all weights 1 (paper: robust over 0.1-10).
        loss_decode=dict(type='MultiClassDiceLoss', loss_weight=1.0),
        loss_cls=dict(type='MultiLabelSoftMarginClsLoss', loss_weight=1.0),
        loss_reg=dict(type='CAMConsistencyLoss', loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# Data: a hisyngen MMSeg export (docs/formats.md). Classes and palette come from its
# metainfo.json. Each dataset config sets data_root in the three dataloaders; from the command
# line: --cfg-options train_dataloader.dataset.data_root=DIR val_dataloader.dataset.data_root=DIR
# test_dataloader.dataset.data_root=DIR (or `hisyngen train CONFIG --data-root DIR`).
data_root = 'data/export'
crop_size = (224, 224)

# img_labels / is_synthetic ride to the decode head in each sample's metainfo.
train_meta_keys = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor',
                   'flip', 'flip_direction', 'reduce_zero_label', 'img_labels', 'is_synthetic')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotationsOrIgnore'),  # real images without mask -> all-255 map
    dict(type='RandomResizedCrop', size=crop_size, scale=(0.9, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='ShiftScaleRotate', shift_limit=0.0625, scale_limit=0.1, rotate_limit=45, prob=0.5),
    dict(type='OpticalDistortion', distort_limit=0.05, shift_limit=0.05, prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='RecomputeImageLabels'),  # synthetic labels = classes left in the augmented mask
    dict(type='PackSegInputs', meta_keys=train_meta_keys),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
# Test-time augmentation (tools/test.py --tta): the 8 flips/rotations, probabilities averaged by
# SegTTAModel. Order matters: HisynEncoderDecoder undoes Rot90 first, then the stock code unflips.
tta_scales = [1.0]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=s, keep_ratio=True) for s in tta_scales],
        [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
         dict(type='RandomFlip', prob=1.0, direction='horizontal')],
        [dict(type='Rot90', k=k) for k in range(4)],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs',
              meta_keys=('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor',
                         'flip', 'flip_direction', 'reduce_zero_label', 'rot90'))],
    ]),
]

# batch_size is per process: synthetic + real, split by MixedBatchSampler's ratio (paper: 32 + 32
# on one GPU; `hisyngen train --gpus N` sets 64 // N per process, keeping the paper's step).
train_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=dict(type='MixedBatchSampler', ratio=(1, 1)),
    dataset=dict(type='HisynMixedDataset', data_root=data_root, pipeline=train_pipeline))
# Validation and test: the same loader over the export's val and test splits.
val_dataloader, test_dataloader = (dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='HisynEvalDataset', data_root=data_root, split=split, pipeline=test_pipeline))
    for split in ('val', 'test'))
# mmseg's IoUMetric keys (aAcc, mIoU, mAcc, and mDice: recent papers on these benchmarks report it),
# plus the paper's fwIoU and IoU.<class> / Dice.<class>; 255 is dropped (hisyngen/mmseg/metrics.py).
val_evaluator = dict(type='TissueIoUMetric', iou_metrics=['mIoU', 'mDice'])
test_evaluator = val_evaluator

# HisynSeg DeepLabV3+ R50-D8 on a WSSS4LUAD export (docs/method.md, Training): 224 crops, 32 synthetic + 32
# real images per step, AdamW 1e-4 / wd 0.05, 60 epochs. Val/test images are whole regions up to
# ~5000 px: sliding 224 windows, stride 224 for validation and 112 for test (EvalStrideHook),
# probabilities averaged over windows; `tools/test.py --tta` adds scales 1-2 x 8 flips/rotations.
#
#   hisyngen train wsss4luad --data-root EXPORT_DIR
#   hisyngen test wsss4luad work_dirs/deeplabv3plus_r50-d8_wsss4luad/best_mIoU_iter_N.pth --data-root EXPORT_DIR --tta
_base_ = ['./_base_/hisynseg_paper.py']
from hisyngen.mmseg_launch import paper_dataset_config  # noqa: E402  (names derived from the stanza)

# The paper's export: 3,600 filtered images per strategy x (Mosaic, Bezier); 60 epochs over them.
globals().update(paper_dataset_config(
    'wsss4luad', 'data/wsss4luad-export', num_synthetic=7200, epochs=60,
    synthetic_per_step=_base_.synthetic_per_step,
    test_cfg=dict(mode='slide', crop_size=(224, 224), stride=(224, 224))))

# What WSSS4LUAD adds: the strides above, and TTA over five scales.
custom_hooks = [dict(type='EvalStrideHook', val_stride=(224, 224), test_stride=(112, 112)), *_base_.custom_hooks]
tta_scales = [1.0, 1.25, 1.5, 1.75, 2.0]
tta_pipeline = _base_.tta_pipeline
tta_pipeline[1]['transforms'][0] = [dict(type='Resize', scale_factor=s, keep_ratio=True) for s in tta_scales]

# HisynSeg iterative stage on luad-histoseg (docs/method.md, Training: Stage 2): retrain on synthetic images plus the real
# images with the pseudo masks written by
#   hisyngen pseudo-label deeplabv3plus_r50-d8_luad-histoseg STAGE1_CKPT --source EXPORT_DIR
# L_seg now also covers the real images; L_reg is dropped; L_cls stays.
_base_ = ['./deeplabv3plus_r50-d8_luad-histoseg.py']

model = dict(decode_head=dict(loss_reg=None, seg_on_real=True))
train_dataloader = dict(dataset=dict(real_masks='pseudo'))

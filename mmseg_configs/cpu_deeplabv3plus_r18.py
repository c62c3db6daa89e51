# DeepLabV3+ on ResNet-18 from scratch, sized for CPU experiments (tools/bench_quality.py):
# output stride 16 (dilated last stage), ASPP dilations 1/6/12/18, 224 crops, BN, 8 synthetic +
# 8 real images per step. Same components, losses and data pipeline as the paper configs.
_base_ = ['./deeplabv3plus_r50-d8_bcss-wsss.py']

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    pretrained=None,
    backbone=dict(depth=18, norm_cfg=norm_cfg, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)),
    decode_head=dict(in_channels=512, channels=128, c1_in_channels=64, c1_channels=48,
                     dilations=(1, 6, 12, 18), norm_cfg=norm_cfg))
train_dataloader = dict(batch_size=16, num_workers=0, persistent_workers=False)
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = dict(num_workers=0, persistent_workers=False)
train_cfg = dict(max_iters=300, val_interval=300)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=300, max_keep_ckpts=1, save_best=None))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)

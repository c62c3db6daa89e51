# Tiny CPU smoke config: DeepLabV3+ on ResNet-18 (no pretrained weights), 64 px crops,
# 2 synthetic + 2 real images per step, 4 iterations with validation and checkpoints every 2.
# For tests, CI and `tools/bench_train.py`; set the export with --cfg-options or --data-root.
_base_ = ['./deeplabv3plus_r50-d8_bcss-wsss.py']

norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN needs CUDA once distributed
crop_size = (64, 64)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(depth=18, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=512, channels=32, c1_in_channels=64, c1_channels=8,
                     dilations=(1, 2, 3, 4), norm_cfg=norm_cfg))

train_pipeline = [dict(t, size=crop_size) if t['type'] == 'RandomResizedCrop' else t
                  for t in _base_.train_pipeline]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = dict(num_workers=0, persistent_workers=False)

train_cfg = dict(max_iters=4, val_interval=2)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2, max_keep_ckpts=2))

# CPU: gloo for `--launcher pytorch`, and no device_ids for DDP (they name CUDA devices).
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)

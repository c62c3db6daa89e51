# Paper schedule (docs/method.md, Training): AdamW lr 1e-4, weight decay 0.05, constant learning rate.
# Epochs are converted to iterations by each dataset config:
#     iters_per_epoch = ceil(num_synthetic / synthetic_per_step)
#     max_iters       = epochs * iters_per_epoch
# (an epoch = one pass over the synthetic images; real images cycle at their own pace).
# Validation and checkpoints once per epoch; the best checkpoint by validation mIoU is kept.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1000, val_interval=100)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=1,
                    save_best='mIoU', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))

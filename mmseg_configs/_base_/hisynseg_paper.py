# What the three paper configs share (docs/method.md, Training): DeepLabV3+ R50-D8 with the CAM-consistency
# head, the HisynSeg data pipeline (224 crops, 32 synthetic + 32 real images per step), AdamW
# 1e-4 / wd 0.05 at a constant rate. A dataset config is a stanza (dataset, export folder,
# synthetic image count, epochs); hisyngen.mmseg_launch.paper_dataset_config derives from it the
# head's class count, the dataloaders' data_root and the schedule below.
#
# Epochs -> iterations (see hisynseg_schedule.py): an epoch is one pass over the synthetic images,
#     iters_per_epoch = ceil(num_synthetic / synthetic_per_step)    (hisyngen.mmseg_launch.iterations_for_epochs)
# `hisyngen train` recomputes the iterations for the export it trains on; with the stock train.py on
# another export size set train_cfg.max_iters, train_cfg.val_interval and default_hooks.checkpoint.interval.
_base_ = ['./hisynseg_runtime.py', './hisynseg_deeplabv3plus_r50-d8.py', './hisynseg_data.py',
          './hisynseg_schedule.py']

synthetic_per_step = 32  # half of train_dataloader.batch_size (MixedBatchSampler ratio 1:1)

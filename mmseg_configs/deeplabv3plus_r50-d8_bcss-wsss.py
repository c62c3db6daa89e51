# HisynSeg DeepLabV3+ R50-D8 on a BCSS-WSSS export (docs/method.md, Training): 224 crops, 32 synthetic + 32
# real images per step, AdamW 1e-4 / wd 0.05, 25 epochs, whole-image evaluation of the 224 patches.
#
#   hisyngen train bcss-wsss --data-root EXPORT_DIR            (or the stock tools/train.py, README)
_base_ = ['./_base_/hisynseg_paper.py']
from hisyngen.mmseg_launch import iterations_for_epochs  # noqa: E402  (one home for epochs -> iterations)
from hisyngen.spec import get_spec  # noqa: E402  (class count: the one place is hisyngen.spec)

num_classes = get_spec('bcss-wsss').num_classes
data_root = 'data/bcss-wsss-export'
num_synthetic = 14400  # paper export: 7,200 filtered images per strategy x (Mosaic, Bezier)
epochs = 25

iters_per_epoch = iterations_for_epochs(num_synthetic, _base_.synthetic_per_step, epochs)[1]
model = dict(decode_head=dict(num_classes=num_classes))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
train_cfg = dict(max_iters=epochs * iters_per_epoch, val_interval=iters_per_epoch)
default_hooks = dict(checkpoint=dict(interval=iters_per_epoch))

# HisynSeg DeepLabV3+ R50-D8 on a BCSS-WSSS export (docs/method.md, Training): 224 crops, 32 synthetic + 32
# real images per step, AdamW 1e-4 / wd 0.05, 25 epochs, whole-image evaluation of the 224 patches.
#
#   hisyngen train bcss-wsss --data-root EXPORT_DIR            (or the stock tools/train.py, README)
_base_ = ['./_base_/hisynseg_paper.py']
from hisyngen.mmseg_launch import paper_dataset_config  # noqa: E402  (names derived from the stanza)

# The paper's export: 7,200 filtered images per strategy x (Mosaic, Bezier); 25 epochs over them.
globals().update(paper_dataset_config(
    'bcss-wsss', 'data/bcss-wsss-export', num_synthetic=14400, epochs=25,
    synthetic_per_step=_base_.synthetic_per_step))

"""hisyngen's MMSegmentation 1.x plugin: import it (configs do, via ``custom_imports``) to register
the HisynSeg components in mmseg's registries.

``compat`` runs first: it makes ``mmseg.models`` importable with mmcv-lite and lets mmengine load
its own checkpoints on torch >= 2.6 (see that module for why and when to delete each workaround).

Registered names (use them as ``type=`` in configs):

- datasets: ``HisynMixedDataset`` (synthetic + real training set), ``HisynEvalDataset`` (val/test)
- transforms: ``LoadAnnotationsOrIgnore``, ``RecomputeImageLabels``, ``RandomResizedCrop``,
  ``ShiftScaleRotate``, ``OpticalDistortion``, ``Rot90``
- data sampler: ``MixedBatchSampler`` (synthetic:real ratio in every batch)
- models: ``CAMConsistencyHead``, ``HisynEncoderDecoder``, losses ``MultiClassDiceLoss``,
  ``MultiLabelSoftMarginClsLoss``, ``CAMConsistencyLoss``
- metric: ``TissueIoUMetric`` (per-class IoU, mIoU, fwIoU); hook: ``EvalStrideHook``
"""

from hisyngen.mmseg import compat

compat.apply()

from hisyngen.mmseg import (  # noqa: E402  (registration happens at import, after compat)
    datasets,
    heads,
    hooks,
    losses,
    metrics,
    samplers,
    segmentors,
    transforms,
)

__all__ = ["compat", "datasets", "heads", "hooks", "losses", "metrics", "samplers", "segmentors", "transforms"]

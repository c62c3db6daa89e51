"""Datasets over an export, transforms, the mixed batch sampler and the IoU metric."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.registry import init_default_scope

import hisyngen.mmseg  # noqa: F401  (compat + registration)
from hisyngen.errors import HisynError
from hisyngen.mmseg import samplers as samplers_module
from hisyngen.mmseg.datasets import HisynEvalDataset, HisynMixedDataset
from hisyngen.mmseg.metrics import TissueIoUMetric
from hisyngen.mmseg.samplers import MixedBatchSampler, split_batch
from hisyngen.mmseg.transforms import (OpticalDistortion, RandomResizedCrop, RecomputeImageLabels, Rot90,
                                       ShiftScaleRotate)
from mmseg_fixtures import tiny_export  # noqa: F401  (pytest fixture)

init_default_scope("mmseg")  # resolve LoadAnnotations etc. to mmseg's, as a runner would
LOAD = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotationsOrIgnore")]


# ---- datasets ---------------------------------------------------------------------------------

def test_mixed_dataset_reads_synthetic_and_real(tiny_export):
    ds = HisynMixedDataset(data_root=str(tiny_export), pipeline=LOAD)
    flags = ds.synthetic_flags()
    assert len(ds) == 8 and flags.sum() == 4
    meta = json.loads((tiny_export / "metainfo.json").read_text())
    assert list(ds.metainfo["classes"]) == meta["classes"]

    syn = ds[int(np.flatnonzero(flags)[0])]
    assert syn["is_synthetic"] and syn["gt_seg_map"].shape == syn["img"].shape[:2]
    assert set(np.unique(syn["gt_seg_map"])) == {0, 1, 255}
    assert syn["img_labels"].tolist() == [1, 1, 0, 0]

    reals = [ds[int(i)] for i in np.flatnonzero(~flags)]
    sizes = {r["img"].shape[:2] for r in reals}
    assert (72, 80) in sizes  # real images keep their own size...
    for r in reals:
        assert not r["is_synthetic"]
        assert r["gt_seg_map"].shape == r["img"].shape[:2] and (r["gt_seg_map"] == 255).all()  # ...and get no mask
    assert [r["img_labels"].tolist() for r in reals][2] == [1, 1, 0, 0]


def test_classes_come_from_metainfo_json(tiny_export, tmp_path):
    copy = shutil.copytree(tiny_export, tmp_path / "export")
    meta = json.loads((copy / "metainfo.json").read_text())
    meta["classes"] = ["a", "b", "c", "d"]
    (copy / "metainfo.json").write_text(json.dumps(meta))
    assert HisynEvalDataset(data_root=str(copy), split="val").metainfo["classes"] == ("a", "b", "c", "d")
    assert HisynMixedDataset(data_root=str(copy)).metainfo["classes"] == ("a", "b", "c", "d")


@pytest.mark.parametrize("dataset", [HisynMixedDataset, HisynEvalDataset])
def test_config_metainfo_is_honoured_or_refused_never_dropped(tiny_export, dataset):
    classes = tuple(json.loads((tiny_export / "metainfo.json").read_text())["classes"])
    palette = [[10 * i, 20, 30] for i in range(len(classes))]
    # the export's classes repeated, another palette, an extra key: all honoured
    ds = dataset(data_root=str(tiny_export), metainfo=dict(classes=list(classes), palette=palette, source="mine"))
    assert ds.metainfo["classes"] == classes and ds.metainfo["palette"] == palette and ds.metainfo["source"] == "mine"
    refused = {"other classes": (dict(classes=("x",)), "metainfo.classes .* differ from the export's"),
               "reordered classes": (dict(classes=classes[::-1]), "remove metainfo.classes"),
               "short palette": (dict(palette=palette[:-1]), "one RGB colour .* per class"),
               "bad colour": (dict(palette=[[0, 0, 256]] * len(classes)), "one RGB colour"),
               "label map": (dict(label_map={0: 1}), "metainfo.label_map cannot be set"),
               "not a dict": (["classes"], "metainfo must be a dict")}
    for name, (metainfo, message) in refused.items():
        with pytest.raises(HisynError, match=message):
            dataset(data_root=str(tiny_export), metainfo=metainfo)


def test_metainfo_from_cfg_options_reaches_the_dataset(tiny_export):
    from mmengine.config import Config
    from mmseg.registry import DATASETS

    from hisyngen.mmseg_launch import mmseg_config_path

    cfg = Config.fromfile(mmseg_config_path("smoke"), import_custom_modules=False)
    cfg.merge_from_dict({"val_dataloader.dataset.data_root": str(tiny_export),
                         "val_dataloader.dataset.metainfo": dict(classes=("TUM",))})
    with pytest.raises(HisynError, match="metainfo.classes"):
        DATASETS.build(cfg.val_dataloader.dataset)


def test_eval_dataset_reads_split(tiny_export):
    ds = HisynEvalDataset(data_root=str(tiny_export), split="test",
                          pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations")])
    assert len(ds) == 2
    sample = ds[1]
    assert sample["img"].shape[:2] == sample["gt_seg_map"].shape == (96, 80)
    assert 255 in sample["gt_seg_map"]


def test_pseudo_mode_needs_masks(tiny_export):
    with pytest.raises(HisynError, match="pseudo-label"):
        HisynMixedDataset(data_root=str(tiny_export), real_masks="pseudo")


def test_missing_export_is_a_one_line_error(tmp_path):
    with pytest.raises(HisynError, match="not found"):
        HisynMixedDataset(data_root=str(tmp_path / "nope"))
    with pytest.raises(HisynError, match="metainfo.json"):
        HisynEvalDataset(data_root=str(tmp_path))


def test_bad_labels_row_is_reported(tiny_export, tmp_path):
    copy = shutil.copytree(tiny_export, tmp_path / "export")
    (copy / "real.jsonl").write_text('{"id": "real-0000", "labels": [1, 0], "source": "x"}\n')
    with pytest.raises(HisynError, match="real.jsonl:1"):
        HisynMixedDataset(data_root=str(copy))


# ---- transforms -------------------------------------------------------------------------------

def test_recompute_labels_after_augmentation():
    mask = np.array([[0, 0], [255, 2]], np.uint8)
    out = RecomputeImageLabels()(dict(gt_seg_map=mask, img_labels=np.array([1, 1, 1, 1]), is_synthetic=True))
    assert out["img_labels"].tolist() == [1, 0, 1, 0]
    real = RecomputeImageLabels()(dict(gt_seg_map=mask, img_labels=np.array([0, 1, 0, 1]), is_synthetic=False))
    assert real["img_labels"].tolist() == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="not a class"):
        RecomputeImageLabels()(dict(gt_seg_map=mask + 3, img_labels=np.zeros(4), is_synthetic=True))


def test_pipeline_drops_labels_of_classes_cropped_away():
    # Class 1 is a single corner pixel: a crop that misses it must remove its label.
    mask = np.zeros((64, 64), np.uint8)
    mask[0, 0] = 1
    results = dict(img=np.zeros((64, 64, 3), np.uint8), gt_seg_map=mask, seg_fields=["gt_seg_map"],
                   img_labels=np.array([1, 1]), is_synthetic=True)
    np.random.seed(3)
    crop = RandomResizedCrop(size=32, scale=(0.25, 0.25), ratio=(1, 1))
    out = RecomputeImageLabels()(crop(results))
    assert out["gt_seg_map"][0, 0] == 0 and out["img_labels"].tolist() == [1, 0]


COLOURS = np.array([[250, 0, 0], [0, 250, 0], [0, 0, 250]], np.uint8)


def _check_aligned(img: np.ndarray, mask: np.ndarray) -> None:
    """Mask values stay in the input's set; inside each region the image has that region's colour."""
    assert set(np.unique(mask)) <= {0, 1, 2, 255}
    interior = np.zeros(mask.shape, bool)
    interior[2:-2, 2:-2] = True
    for dy in (-2, -1, 0, 1, 2):
        for dx in (-2, -1, 0, 1, 2):
            interior &= np.roll(mask, (dy, dx), axis=(0, 1)) == mask
    for value in (0, 1, 2):
        region = interior & (mask == value)
        assert region.sum() > 20
        assert np.abs(img[region].astype(int) - COLOURS[value]).max() <= 2


@pytest.mark.parametrize("transform", [
    ShiftScaleRotate(prob=1.0, rotate_limit=40, scale_limit=0.2),
    RandomResizedCrop(size=(48, 40), scale=(0.5, 0.9)),
    OpticalDistortion(prob=1.0, distort_limit=0.3),
    Rot90(k=1),
])
def test_geometric_transforms_keep_image_and_mask_aligned(transform):
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 22:44] = 1
    mask[40:, :] = 2
    np.random.seed(0)
    for _ in range(3):
        results = dict(img=COLOURS[mask].copy(), gt_seg_map=mask.copy(), seg_fields=["gt_seg_map"])
        out = transform(results)
        assert out["img"].shape[:2] == out["gt_seg_map"].shape
        _check_aligned(out["img"], out["gt_seg_map"])


def _transform_digest(transform, seed: int) -> str:
    """Image, both seg maps, img_shape/rot90 and the next global draw (the transform's draw count)."""
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, (40, 52), dtype=np.uint8)
    results = dict(img=img, gt_seg_map=mask, pseudo_map=3 - mask, seg_fields=["gt_seg_map", "pseudo_map", "gt_seg_map"])
    np.random.seed(seed)
    out = transform(results)
    digest = hashlib.sha256()
    for key in ("img", "gt_seg_map", "pseudo_map"):
        digest.update(key.encode() + repr(out[key].shape).encode() + out[key].tobytes())
    digest.update(repr((out.get("img_shape"), out.get("rot90"), np.random.rand())).encode())
    return digest.hexdigest()[:16]


# Expected digests computed with the transforms as they were BEFORE the DualTransform base
# (commit d205705, one hand-written loop per transform), seeds 0-3: the base must keep every
# transform's draws, their order and its outputs byte for byte (prob 0.5 covers skipped calls).
PINNED_TRANSFORMS = [
    (RandomResizedCrop(size=(24, 30), scale=(0.3, 0.9)),
     ["cfc26fa4e4abf330", "649d9a9121ab364b", "cbb902dfc82265eb", "16a95a9d35ced3d7"]),
    (RandomResizedCrop(size=16, scale=(0.99, 1.0), ratio=(3.0, 4.0)),  # 10 misses -> centred fallback
     ["bec3191315e6a4e1", "5ccb40507507d690", "4163809ea7384a7e", "f863bc6631a54220"]),
    (ShiftScaleRotate(prob=0.5, rotate_limit=40, scale_limit=0.2),
     ["1b20948fc31a93a2", "490e4ae7843e493d", "116060419e95dd6e", "1d4348018cb52030"]),
    (ShiftScaleRotate(prob=1.0, border="constant"),
     ["839debc5ae7c67c1", "654c50a4e44ed402", "4b006e5f9d2f9886", "392850045dc7f6e4"]),
    (OpticalDistortion(prob=0.5, distort_limit=0.3),
     ["65da6b6eb245d187", "b673fe8c5464dcfe", "651b97d5bb1de914", "a29a700cdedb9ccd"]),
    (Rot90(k=3), ["2f110a3d076074b3", "0c9c961e94ae565f", "8c16dea0e0716816", "d3b3328172515eb6"]),
]


@pytest.mark.parametrize("transform, expected", PINNED_TRANSFORMS, ids=lambda p: repr(p)[:40])
def test_transforms_draw_and_output_as_pinned(transform, expected):
    assert [_transform_digest(transform, seed) for seed in range(4)] == expected


# ---- the batch sampler ------------------------------------------------------------------------

class FakeDataset:
    def __init__(self, flags):
        self.flags = np.asarray(flags, bool)

    def __len__(self):
        return len(self.flags)

    def get_data_info(self, i):
        return {"is_synthetic": bool(self.flags[i])}


def take(batch_sampler, n):
    it = iter(batch_sampler)
    return [next(it) for _ in range(n)]


def test_split_batch():
    assert split_batch(64, (1, 1)) == (32, 32)
    assert split_batch(8, (3, 1)) == (6, 2)
    assert split_batch(4, (1, 0)) == (4, 0)
    with pytest.raises(HisynError):
        split_batch(1, (1, 1))


@pytest.mark.parametrize("ratio,expected", [((1, 1), (4, 4)), ((3, 1), (6, 2))])
def test_every_batch_has_the_ratio_even_when_one_kind_is_rare(ratio, expected):
    flags = [True] * 3 + [False] * 997  # 3 synthetic among 1000
    ds = FakeDataset(flags)
    sampler = MixedBatchSampler(InfiniteSampler(ds, seed=7), batch_size=8, ratio=ratio)
    for batch in take(sampler, 50):
        kinds = ds.flags[batch]
        assert (kinds.sum(), (~kinds).sum()) == expected


def test_sampler_is_deterministic_and_seed_dependent():
    ds = FakeDataset([i % 3 == 0 for i in range(30)])
    a = take(MixedBatchSampler(InfiniteSampler(ds, seed=1), batch_size=4), 10)
    b = take(MixedBatchSampler(InfiniteSampler(ds, seed=1), batch_size=4), 10)
    c = take(MixedBatchSampler(InfiniteSampler(ds, seed=2), batch_size=4), 10)
    assert a == b and a != c


def test_sampler_covers_each_kind_before_repeating():
    ds = FakeDataset([True] * 6 + [False] * 10)
    batches = take(MixedBatchSampler(InfiniteSampler(ds, seed=0), batch_size=4), 3)  # 6 synthetic draws
    synthetic = [i for b in batches for i in b if ds.flags[i]]
    assert sorted(synthetic) == list(range(6))


def test_sampler_ranks_get_disjoint_samples(monkeypatch):
    ds = FakeDataset([True] * 8 + [False] * 8)
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr(samplers_module, "get_dist_info", lambda rank=rank: (rank, 2))
        batches = take(MixedBatchSampler(InfiniteSampler(ds, seed=5), batch_size=4), 2)
        seen.append({i for b in batches for i in b})
    assert seen[0].isdisjoint(seen[1]) and len(seen[0] | seen[1]) == 16


def test_sampler_epoch_mode_with_default_sampler():
    ds = FakeDataset([True] * 10 + [False] * 3)
    sampler = MixedBatchSampler(DefaultSampler(ds, seed=0), batch_size=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5  # ceil(10 synthetic / 2 per batch)
    assert all(len(b) == 4 for b in batches)


def test_sampler_needs_both_kinds():
    with pytest.raises(HisynError, match="real"):
        MixedBatchSampler(InfiniteSampler(FakeDataset([True] * 4), seed=0), batch_size=4)
    only_syn = MixedBatchSampler(InfiniteSampler(FakeDataset([True] * 4), seed=0), batch_size=4, ratio=(1, 0))
    assert len(take(only_syn, 1)[0]) == 4


def test_sampler_on_a_real_export(tiny_export):
    ds = HisynMixedDataset(data_root=str(tiny_export))
    for batch in take(MixedBatchSampler(InfiniteSampler(ds, seed=0), batch_size=4), 5):
        assert sum(ds.get_data_info(i)["is_synthetic"] for i in batch) == 2


# ---- the metric -------------------------------------------------------------------------------

def test_metric_iou_miou_fwiou_by_hand():
    metric = TissueIoUMetric()
    metric.dataset_meta = dict(classes=("A", "B", "C"))
    gt = torch.tensor([[0, 0, 0, 1], [1, 1, 255, 255]])
    pred = torch.tensor([[0, 0, 1, 1], [1, 0, 2, 2]])
    metric.process({}, [dict(pred_sem_seg=dict(data=pred[None]), gt_sem_seg=dict(data=gt[None]))])
    scores = metric.compute_metrics(metric.results)
    # valid pixels: gt 0 x3 (pred 0,0,1), gt 1 x3 (pred 1,1,0); the two 255 pixels are dropped.
    # A: I=2, U=|{pred 0}|+|{gt 0}|-I = 3+3-2 = 4 -> 0.5; B: I=2, U=3+3-2 = 4 -> 0.5; C: absent -> NaN.
    assert scores["IoU.A"] == 50.0 and scores["IoU.B"] == 50.0 and np.isnan(scores["IoU.C"])
    assert scores["mIoU"] == 50.0
    assert scores["fwIoU"] == pytest.approx(100 * (0.5 * 0.5 + 0.5 * 0.5))
    assert scores["aAcc"] == pytest.approx(100 * 4 / 6, abs=0.01)


def test_metric_fwiou_weights_by_ground_truth_frequency():
    metric = TissueIoUMetric()
    metric.dataset_meta = dict(classes=("A", "B"))
    gt = torch.tensor([[0, 0, 0, 0, 0, 0, 1, 1]])
    pred = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 0]])
    metric.process({}, [dict(pred_sem_seg=dict(data=pred[None]), gt_sem_seg=dict(data=gt[None]))])
    scores = metric.compute_metrics(metric.results)
    iou_a, iou_b = 5 / 7, 1 / 3  # A: I=5, U=6+6-5; B: I=1, U=2+2-1
    assert scores["mIoU"] == pytest.approx(100 * (iou_a + iou_b) / 2, abs=0.01)
    assert scores["fwIoU"] == pytest.approx(100 * (6 / 8 * iou_a + 2 / 8 * iou_b), abs=0.01)


# Confusion matrix (rows: ground truth, columns: prediction) over classes A, B, C, D; two more
# pixels have ground truth 255 (predicted D) and are dropped, so D is in neither map:
#
#          pred A  pred B  pred C  pred D   | label area
#   gt A      4       1       1       0     |     6
#   gt B      1       2       0       0     |     3
#   pred area 5       3       1       0     |     9 valid pixels, 6 on the diagonal
#
# intersect = (4, 2, 0, 0); union = pred + label - intersect = (7, 4, 1, 0)
CONFUSION_GT = [0, 0, 0, 0, 0, 0, 1, 1, 1, 255, 255]
CONFUSION_PRED = [0, 0, 0, 0, 1, 2, 0, 1, 1, 3, 3]


def confusion_scores(**kwargs):
    metric = TissueIoUMetric(**kwargs)
    metric.dataset_meta = dict(classes=("A", "B", "C", "D"))
    gt, pred = torch.tensor([CONFUSION_GT]), torch.tensor([CONFUSION_PRED])
    metric.process({}, [dict(pred_sem_seg=dict(data=pred[None]), gt_sem_seg=dict(data=gt[None]))])
    return metric.compute_metrics(metric.results)


def test_metric_keeps_mmseg_keys_and_adds_fwiou():
    scores = confusion_scores()
    nan = float("nan")
    expected = {
        "aAcc": 66.67,   # 6 / 9
        "mIoU": 35.71,   # IoU (4/7, 2/4, 0/1, NaN): mean of the three defined = 1.0714 / 3
        "mAcc": 66.67,   # Acc = intersect / label (4/6, 2/3, NaN, NaN)
        "fwIoU": 54.76,  # 6/9 x 4/7 + 3/9 x 2/4
        "IoU.A": 57.14, "IoU.B": 50.0, "IoU.C": 0.0, "IoU.D": nan,
    }
    assert list(scores) == list(expected)  # mmseg's keys in mmseg's order, then ours
    # abs 1e-4: mmseg's own summary values are float32 (35.71 reads 35.709999); all are 2-decimal.
    assert scores == pytest.approx(expected, abs=1e-4, nan_ok=True)


def test_metric_honours_iou_metrics_dice_and_fscore():
    scores = confusion_scores(iou_metrics=["mIoU", "mDice", "mFscore"])
    nan = float("nan")
    expected = {
        "aAcc": 66.67, "mIoU": 35.71, "mAcc": 66.67,
        "mDice": 46.46,       # Dice = 2 I / (pred + label) = (8/11, 4/6, 0/1, NaN): 1.3939 / 3
        "mFscore": 69.70,     # F1 of (precision, recall); C has recall 0/0 -> NaN: (8/11 + 2/3) / 2
        "mPrecision": 48.89,  # I / pred = (4/5, 2/3, 0/1, NaN): 1.4667 / 3
        "mRecall": 66.67,     # I / label = (4/6, 2/3, NaN, NaN)
        "fwIoU": 54.76,
        "IoU.A": 57.14, "IoU.B": 50.0, "IoU.C": 0.0, "IoU.D": nan,
        "Dice.A": 72.73, "Dice.B": 66.67, "Dice.C": 0.0, "Dice.D": nan,
        "Fscore.A": 72.73, "Fscore.B": 66.67, "Fscore.C": nan, "Fscore.D": nan,
    }
    assert scores == pytest.approx(expected, abs=1e-4, nan_ok=True) and set(scores) == set(expected)
    assert confusion_scores(iou_metrics="mDice").keys() == {"aAcc", "mDice", "mAcc", "fwIoU",
                                                            "Dice.A", "Dice.B", "Dice.C", "Dice.D"}


def test_metric_nan_to_num_counts_undefined_classes_in_the_mean():
    scores = confusion_scores(nan_to_num=0)
    assert scores["mIoU"] == pytest.approx(26.79)   # (4/7 + 2/4 + 0 + 0) / 4
    assert scores["mAcc"] == pytest.approx(33.33)   # (4/6 + 2/3 + 0 + 0) / 4
    assert scores["IoU.D"] == 0.0 and scores["aAcc"] == pytest.approx(66.67)
    assert scores["fwIoU"] == pytest.approx(54.76)  # D has no ground truth: weight 0 either way


def test_metric_summary_equals_stock_iou_metric():
    from mmseg.evaluation import IoUMetric

    stock = IoUMetric(iou_metrics=["mIoU", "mDice", "mFscore"], nan_to_num=-1, beta=2)
    stock.dataset_meta = dict(classes=("A", "B", "C", "D"))
    gt, pred = torch.tensor([CONFUSION_GT]), torch.tensor([CONFUSION_PRED])
    stock.process({}, [dict(pred_sem_seg=dict(data=pred[None]), gt_sem_seg=dict(data=gt[None]))])
    theirs = stock.compute_metrics(stock.results)
    ours = confusion_scores(iou_metrics=["mIoU", "mDice", "mFscore"], nan_to_num=-1, beta=2)
    assert {k: ours[k] for k in theirs} == theirs


def test_metric_refuses_unknown_iou_metrics_at_construction():
    with pytest.raises(HisynError, match="iou_metrics .*mIoU, mDice, mFscore"):
        TissueIoUMetric(iou_metrics=["mIoU", "mAP"])

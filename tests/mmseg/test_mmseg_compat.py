"""Environment workarounds, config lookup, the CLI plumbing and the evaluation segmentor."""

import math
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmseg.structures import SegDataSample

import hisyngen.mmseg  # noqa: F401  (compat + registration)
from hisyngen.mmseg_launch import (data_root_options, iterations_for_epochs, mmseg_config_path, packaged_configs,
                              stock_tool, tool_command)
from hisyngen.errors import HisynError
from hisyngen.mmseg import compat
from hisyngen.mmseg.segmentors import sliding_windows
from mmseg_fixtures import write_tiny_export

LN3 = math.log(3.0)


# ---- compat -----------------------------------------------------------------------------------

def test_mmcv_ext_stub_raises_a_clear_error_when_an_op_is_called():
    import importlib.util

    import mmcv._ext

    if not isinstance(mmcv._ext, compat._MissingCompiledOps):
        pytest.skip("full mmcv with compiled ops installed: no stub needed")
    assert hasattr(mmcv._ext, "nms")  # mmcv's ext_loader only checks hasattr
    with pytest.raises(RuntimeError, match="'roi_align_forward' is not available with mmcv-lite"):
        mmcv._ext.roi_align_forward(torch.zeros(1))
    with pytest.raises(AttributeError):
        mmcv._ext.__wrapped__  # dunders stay missing, so introspection does not see fake objects
    assert importlib.util.find_spec("mmcv._ext") is not None


def test_stub_is_not_installed_over_a_real_extension(monkeypatch):
    import importlib.util

    monkeypatch.delitem(sys.modules, "mmcv._ext")
    real_spec = importlib.machinery.ModuleSpec("mmcv._ext", None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: real_spec)
    assert compat.install_mmcv_ext_stub() is False
    assert "mmcv._ext" not in sys.modules


class _Payload:
    """A non-tensor object in a checkpoint that no hisyngen/mmengine run saves."""

    def __init__(self, value):
        self.value = value


def test_checkpoint_loader_loads_foreign_objects_only_when_trusted(tmp_path, monkeypatch):
    from mmengine.runner.checkpoint import CheckpointLoader

    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": {"hub": _Payload(3)}}, path)
    with pytest.raises(compat.UntrustedCheckpointError, match="--trust-checkpoint"):
        CheckpointLoader.load_checkpoint(str(path), map_location="cpu")
    monkeypatch.setenv("HISYNGEN_TRUST_CHECKPOINTS", "1")
    loaded = CheckpointLoader.load_checkpoint(str(path), map_location="cpu")
    assert loaded["meta"]["hub"].value == 3 and torch.equal(loaded["state_dict"]["w"], torch.ones(2))


def test_cpu_launcher_skips_cuda_device_selection():
    import mmengine.dist.utils as dist_utils

    if torch.cuda.is_available():
        pytest.skip("CUDA machine: mmengine's own launcher is used")
    assert dist_utils._init_dist_pytorch is compat._init_dist_pytorch_cpu


# ---- configs and the CLI plumbing -------------------------------------------------------------

def test_config_short_names():
    assert mmseg_config_path("bcss-wsss").name == "deeplabv3plus_r50-d8_bcss-wsss.py"
    assert mmseg_config_path("bcss-wsss_stage2").name == "deeplabv3plus_r50-d8_bcss-wsss_stage2.py"
    assert mmseg_config_path("smoke").name == "smoke_deeplabv3plus_r18.py"
    assert mmseg_config_path("wsss4luad").is_file()
    with pytest.raises(HisynError, match="unknown config"):
        mmseg_config_path("imagenet")
    with pytest.raises(HisynError, match="not found"):
        mmseg_config_path("missing/config.py")


def test_every_packaged_config_parses_with_classes_from_the_spec():
    expected = {"bcss-wsss": 4, "luad-histoseg": 4, "wsss4luad": 3}
    names = packaged_configs()
    assert set(names) == {"cpu_deeplabv3plus_r18", "smoke_deeplabv3plus_r18", "deeplabv3plus_r50-d8_wsss4luad",
                          "deeplabv3plus_r50-d8_bcss-wsss", "deeplabv3plus_r50-d8_bcss-wsss_stage2",
                          "deeplabv3plus_r50-d8_luad-histoseg", "deeplabv3plus_r50-d8_luad-histoseg_stage2"}
    for name in names:
        cfg = Config.fromfile(mmseg_config_path(name))
        small = name.startswith(("smoke", "cpu"))
        dataset = "bcss-wsss" if small else next(k for k in expected if k in name)
        assert cfg.model.decode_head.num_classes == expected[dataset]
        assert cfg.custom_imports.imports == ["hisyngen.mmseg"]
        assert cfg.train_dataloader.batch_sampler.type == "MixedBatchSampler"
        if name.startswith("cpu"):  # fixed-budget experiments: the last checkpoint, no selection
            assert cfg.default_hooks.checkpoint.save_best is None and cfg.model.pretrained is None
            assert cfg.model.backbone.depth == 18 and cfg.train_dataloader.batch_size == 16
        else:
            assert cfg.default_hooks.checkpoint.save_best == "mIoU"
        if not small:
            assert cfg.optim_wrapper.optimizer == dict(type="AdamW", lr=1e-4, weight_decay=0.05)
            assert cfg.train_dataloader.batch_size == 64 and cfg.model.pretrained == "open-mmlab://resnet50_v1c"
        if "stage2" in name:
            assert cfg.model.decode_head.loss_reg is None and cfg.model.decode_head.seg_on_real
            assert cfg.train_dataloader.dataset.real_masks == "pseudo"
        else:
            assert cfg.model.decode_head.loss_reg.type == "CAMConsistencyLoss"


def test_schedules_convert_epochs_to_iterations():
    # max_iters = epochs * ceil(num_synthetic / 32)
    assert Config.fromfile(mmseg_config_path("bcss-wsss")).train_cfg.max_iters == 25 * 450
    wsss = Config.fromfile(mmseg_config_path("wsss4luad"))
    assert wsss.train_cfg.max_iters == 60 * 225 and wsss.train_cfg.val_interval == 225
    assert iterations_for_epochs(100, 32, 2) == (8, 4)


PAPER_CONFIGS = ("deeplabv3plus_r50-d8_bcss-wsss", "deeplabv3plus_r50-d8_luad-histoseg", "deeplabv3plus_r50-d8_wsss4luad")
STOCK_MODEL = "_base_/models/deeplabv3plus_r50-d8.py"


def _top_level_base(path):
    """The ``_base_`` list a config file declares (read, not executed)."""
    import ast

    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["_base_"]:
            return ast.literal_eval(node.value)
    return []


def test_paper_model_inherits_mmseg_stock_deeplabv3plus():
    import mmseg

    from hisyngen.mmseg_launch import CONFIG_DIR

    assert f"mmseg::{STOCK_MODEL}" in _top_level_base(CONFIG_DIR / "_base_" / "hisynseg_deeplabv3plus_r50-d8.py")
    stock = Config.fromfile(str(Path(mmseg.__file__).parent / ".mim" / "configs" / STOCK_MODEL)).model
    ours = Config.fromfile(mmseg_config_path("bcss-wsss")).model
    assert ours.backbone == stock.backbone and ours.pretrained == stock.pretrained
    changed = {"type", "num_classes", "loss_decode", "cam_dropout", "loss_cls", "loss_reg"}  # what HisynSeg changes
    assert {k: v for k, v in ours.decode_head.items() if k not in changed} == \
        {k: v for k, v in stock.decode_head.items() if k not in changed}
    assert ours.decode_head.loss_decode == dict(type="MultiClassDiceLoss", loss_weight=1.0)  # no stock CE keys left
    assert ours.auxiliary_head is None and ours.data_preprocessor == dict(stock.data_preprocessor, size=(224, 224))


def test_dataset_configs_share_one_base(tmp_path):
    import ast
    import shutil

    from hisyngen.mmseg_launch import CONFIG_DIR

    copy = shutil.copytree(CONFIG_DIR, tmp_path / "configs")
    with open(copy / "_base_" / "hisynseg_paper.py", "a") as handle:  # one change in the shared base...
        handle.write("\noptim_wrapper = dict(optimizer=dict(lr=2e-4))\n")
    for name in (*PAPER_CONFIGS, "deeplabv3plus_r50-d8_bcss-wsss_stage2", "deeplabv3plus_r50-d8_luad-histoseg_stage2"):
        assert Config.fromfile(str(copy / f"{name}.py")).optim_wrapper.optimizer.lr == 2e-4, name  # ...reaches all
    # and two dataset configs differ only in their stanza's dataset, export folder and synthetic image count
    bcss, luad = ([ast.dump(node) for node in ast.parse((CONFIG_DIR / f"{name}.py").read_text()).body]
                  for name in PAPER_CONFIGS[:2])
    assert [statement for statement in bcss if statement not in luad] == [bcss[-1]]  # the stanza

    def stanza(name):
        call = ast.parse((CONFIG_DIR / f"{name}.py").read_text()).body[-1].value.args[0]
        return [ast.dump(a) for a in call.args] + [ast.dump(k) for k in call.keywords]

    assert sum(a != b for a, b in zip(stanza(PAPER_CONFIGS[0]), stanza(PAPER_CONFIGS[1]))) == 3


def test_wsss4luad_evaluation_protocol():
    cfg = Config.fromfile(mmseg_config_path("wsss4luad"))
    assert cfg.model.test_cfg == dict(mode="slide", crop_size=(224, 224), stride=(224, 224))
    assert cfg.custom_hooks[0] == dict(type="EvalStrideHook", val_stride=(224, 224), test_stride=(112, 112))
    scales, flips, rotations = cfg.tta_pipeline[1]["transforms"][:3]
    assert [s["scale_factor"] for s in scales] == [1.0, 1.25, 1.5, 1.75, 2.0]
    assert len(flips) * len(rotations) == 8


def test_r50_model_builds_without_weights():
    from mmseg.registry import MODELS

    init_default_scope("mmseg")
    cfg = Config.fromfile(mmseg_config_path("bcss-wsss"))
    cfg.model.pretrained = None
    cfg.model.backbone.norm_cfg = cfg.model.decode_head.norm_cfg = dict(type="BN", requires_grad=True)
    model = MODELS.build(cfg.model)
    assert model.decode_head.cam_conv.in_channels == 2048 and model.decode_head.cam_conv.out_channels == 4


def test_tool_command_passes_arguments_through():
    argv = tool_command("train", ["cfg.py", "--resume"], cfg_options=["a=1"], python="py")
    assert argv == ["py", str(stock_tool("train")), "cfg.py", "--resume", "--cfg-options", "a=1"]
    dist = tool_command("train", ["cfg.py"], nproc=2, python="py")
    assert dist[:5] == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert dist[-2:] == ["--launcher", "pytorch"]
    assert stock_tool("test").name == "test.py"


def test_data_root_options_cover_all_loaders(tmp_path):
    opts = data_root_options(tmp_path)
    assert [o.split("=")[0] for o in opts] == [f"{k}_dataloader.dataset.data_root" for k in ("train", "val", "test")]
    with pytest.raises(HisynError, match="comma"):
        data_root_options(tmp_path / "a,b")


def test_cli_reports_user_errors_on_one_line(tmp_path):
    from click.testing import CliRunner

    from hisyngen.cli.common import HisynGroup
    from hisyngen.cli.mmseg import COMMANDS

    group = HisynGroup(commands={c.name: c for c in COMMANDS})
    result = CliRunner().invoke(group, ["train", "nope.py"])
    assert result.exit_code == 1 and result.output.strip() == "error: config file not found: nope.py"
    result = CliRunner().invoke(group, ["train", "smoke", "--data-root", str(tmp_path)])
    assert result.exit_code == 1 and "not a hisyngen MMSeg export" in result.output
    result = CliRunner().invoke(group, ["pseudo-label", "smoke", "x.pth", "--source", str(tmp_path / "none")])
    assert result.exit_code == 1 and "MMSeg export not found" in result.output


def test_train_plan_follows_the_export_size_classes_and_gpus(tmp_path):
    from pathlib import Path

    from hisyngen.mmseg_launch import (config_with, export_options, load_mmseg_config, schedule_options,
                                  user_cfg_options, with_options)
    from hisyngen.spec import WSSS4LUAD

    export = write_tiny_export(tmp_path / "bcss")  # 4 synthetic images, BCSS classes
    paper = load_mmseg_config(mmseg_config_path("bcss-wsss"))
    # the paper config (25 epochs of 14,400 images at 32 per step) rescaled to this export:
    # 25 x ceil(4 / 32) = 25 iterations; on 4 GPUs each takes 64 / 4 = 16 images per step
    options, _ = schedule_options(paper, str(export), 1, None)
    assert options == ["train_cfg.max_iters=25", "train_cfg.val_interval=1", "default_hooks.checkpoint.interval=1"]
    options, _ = schedule_options(paper, str(export), 4, 2)
    assert options == ["train_dataloader.batch_size=16", "train_cfg.max_iters=2", "train_cfg.val_interval=1",
                       "default_hooks.checkpoint.interval=1"]
    with pytest.raises(HisynError, match="batch of 64 images per step does not split over 3 GPUs"):
        schedule_options(paper, str(export), 3, None)
    with pytest.raises(HisynError, match="batch_size 1 is too small for ratio"):
        schedule_options(paper, str(export), 64, None)
    # the user's --cfg-options reach the plan (their batch is per GPU) and come last in the command
    user = user_cfg_options(["--resume", "--cfg-options", "train_dataloader.batch_size=16", "a.b=1"])
    assert user == {"train_dataloader.batch_size": 16, "a.b": 1}
    options, _ = schedule_options(config_with(mmseg_config_path("bcss-wsss"), user), str(export), 2, 1,
                                  per_process_batch=True)
    assert options == ["train_cfg.max_iters=1", "train_cfg.val_interval=1", "default_hooks.checkpoint.interval=1"]
    mine = user_cfg_options(["--cfg-options", "train_cfg.max_iters=100"])
    assert schedule_options(config_with(mmseg_config_path("bcss-wsss"), mine), str(export), 1, None) == ([], [])
    argv = with_options(Path("c.py"), ["train_cfg.max_iters=25"], ["--cfg-options", "train_cfg.max_iters=100"])
    assert argv == ["c.py", "--cfg-options", "train_cfg.max_iters=25", "--cfg-options", "train_cfg.max_iters=100"]
    # a config with its own iteration count (smoke: 4) keeps it
    smoke = load_mmseg_config(mmseg_config_path("smoke"))
    assert schedule_options(smoke, str(export), 1, None) == ([], [])

    assert export_options(smoke, str(export))[0] == data_root_options(export)  # BCSS head, BCSS export
    luad = write_tiny_export(tmp_path / "wsss", spec=WSSS4LUAD)
    options, notes = export_options(smoke, str(luad))
    assert options[-1] == "model.decode_head.num_classes=3" and "tumor, stroma, normal" in notes[0]
    with pytest.raises(HisynError, match=r"MMSeg export not found: .* \(the config's data_root; pass --data-root"):
        export_options(smoke, None)


# ---- evaluation segmentor ---------------------------------------------------------------------

def test_sliding_windows_cover_the_image_flush_with_the_border():
    windows = list(sliding_windows(300, 224, (224, 224), (112, 112)))
    assert windows == [(0, 0, 224, 224), (76, 0, 300, 224)]
    assert list(sliding_windows(100, 100, (224, 224), (112, 112))) == [(0, 0, 100, 100)]


@pytest.fixture(scope="module")
def smoke_model():
    from mmseg.registry import MODELS

    init_default_scope("mmseg")
    cfg = Config.fromfile(mmseg_config_path("smoke"))
    return MODELS.build(cfg.model).eval()


def test_slide_inference_averages_probabilities(smoke_model, monkeypatch):
    # Fake network on 4 classes: the first window (columns 0-3) says [ln 3, 0, 0, 0] (p0 = 1/2),
    # the second (columns 2-5) says zeros (p0 = 1/4).
    def encode_decode(window, metas):
        logits = torch.zeros(1, 4, *window.shape[2:])
        logits[:, 0] = LN3 if encode_decode.calls == 0 else 0.0
        encode_decode.calls += 1
        return logits

    encode_decode.calls = 0
    monkeypatch.setattr(smoke_model, "encode_decode", encode_decode)
    monkeypatch.setattr(smoke_model, "test_cfg", ConfigDict(mode="slide", crop_size=(4, 4), stride=(2, 2)))
    out = smoke_model.slide_inference(torch.zeros(1, 3, 4, 6), [dict(img_shape=(4, 6))])
    probs = out.softmax(dim=1)
    # Overlap (columns 2-3): mean of probabilities 0.375 (averaging logits would give 0.366).
    assert probs[0, 0, 0, 0].item() == pytest.approx(3 / 6)
    assert probs[0, 0, 0, 2].item() == pytest.approx((3 / 6 + 1 / 4) / 2)
    assert probs[0, 0, 0, 5].item() == pytest.approx(1 / 4)



@pytest.mark.parametrize("k,flip", [(1, False), (3, True), (2, True)])
def test_rot90_views_are_rotated_back(smoke_model, k, flip):
    # A prediction equal to the transformed view itself must come back as the original map.
    original = torch.arange(4 * 6 * 8, dtype=torch.float32).reshape(1, 4, 6, 8)
    view = original.flip(3) if flip else original
    view = torch.rot90(view, k, dims=(2, 3))
    sample = SegDataSample(metainfo=dict(rot90=k, flip=flip, flip_direction="horizontal" if flip else None,
                                         ori_shape=(6, 8), img_shape=tuple(view.shape[2:]),
                                         padding_size=[0, 0, 0, 0]))
    result = smoke_model.postprocess_result(view.clone(), [sample])[0]
    assert torch.allclose(result.seg_logits.data, original[0])

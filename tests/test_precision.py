from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hisyngen.errors import HisynError
from hisyngen.filtering.model import fold_batchnorm
from hisyngen.filtering.train import seeded_model
from hisyngen.precision import autocast, cpu_bf16_flags, resolve_precision

CPU = torch.device("cpu")
WITH = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\n"
WITHOUT = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"


def test_auto_is_bf16_only_with_native_cpu_flags():
    assert cpu_bf16_flags(WITH) == ("avx512_bf16",)
    assert cpu_bf16_flags("flags : amx_bf16 amx_tile\n") == ("amx_bf16",)
    assert resolve_precision("auto", CPU, cpuinfo=WITH) == "bf16"
    assert resolve_precision("auto", CPU, cpuinfo=WITHOUT) == "fp32"
    assert resolve_precision("fp32", CPU, cpuinfo=WITH) == "fp32"
    with pytest.raises(HisynError, match="no native bf16"):
        resolve_precision("bf16", CPU, cpuinfo=WITHOUT)
    with pytest.raises(HisynError, match="CUDA"):
        resolve_precision("fp16", CPU, cpuinfo=WITH)
    with pytest.raises(HisynError, match="not one of"):
        resolve_precision("half", CPU)


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_asks_for_native_bf16(monkeypatch, native, expected):
    import contextlib

    asked = {}

    def supported(including_emulation=True):
        asked["emulation"] = including_emulation
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    assert resolve_precision("auto", SimpleNamespace(type="cuda")) == expected
    assert asked["emulation"] is False  # emulated bf16 on a pre-Ampere GPU is slower, not native


def test_bf16_scores_are_finite_and_close_to_fp32():
    model = fold_batchnorm(seeded_model(0).eval()).to(memory_format=torch.channels_last)
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    with torch.inference_mode():
        fp32 = torch.softmax(model(images), 1)
        with autocast("bf16", CPU):
            logits = model(images)
        assert logits.dtype == torch.bfloat16
        bf16 = torch.softmax(logits.float(), 1)
    assert torch.isfinite(bf16).all()
    assert torch.allclose(fp32, bf16, atol=0.05)
    assert not torch.equal(fp32, bf16)  # it did run in bf16


def test_precision_is_in_the_report_and_the_filter_identity(tmp_path, monkeypatch):
    from hisyngen.filtering.filter import filter_corpus
    from hisyngen.filtering.select import Selection
    from hisyngen.filtering.train import TrainConfig, fit
    from hisyngen.sources import open_source
    from hisyngen.spec import get_spec
    from hisyngen.synthesis import make_strategy

    from fixtures import write_benchmark
    from test_filtering import LABELS, random_model, toy_sets

    monkeypatch.setattr("hisyngen.precision.cpu_bf16_flags", lambda cpuinfo=None: ("avx512_bf16",))
    (tmp_path / "toy").mkdir()
    real, fake = toy_sets(tmp_path / "toy", n=8)
    _, report = fit(real, fake, TrainConfig(epochs=1, batch_size=4, image_size=32, precision="bf16"))
    assert report["precision"] == "bf16"

    write_benchmark(tmp_path / "src", get_spec("bcss-wsss"), LABELS, style="run", n_val=0, n_test=0, size=48)
    source = open_source(tmp_path / "src")
    strategy = make_strategy("mosaic", {"size": 32}, classes=source.spec.classes)
    model = random_model(tmp_path / "m.pt", "mosaic", source.spec.classes)
    kwargs = dict(selection=Selection(mode="threshold", threshold=0.01, stratify=False), batch_size=8, workers=0)
    summary = filter_corpus(source, strategy, model, tmp_path / "out", 4, precision="fp32", **kwargs)
    assert summary.precision == "fp32" and summary.to_dict()["precision"] == "fp32"
    with pytest.raises(HisynError, match="precision"):
        filter_corpus(source, strategy, model, tmp_path / "out", 4, precision="bf16", **kwargs)

"""The quality benchmark harness (tools/bench_quality.py) on a tiny source, so it cannot rot."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hisyngen.spec import get_spec

from fixtures import write_benchmark

TOOL = Path(__file__).resolve().parents[1] / "tools" / "bench_quality.py"
LABELS = [(1, 0, 0, 0)] * 4 + [(0, 1, 0, 0)] * 4 + [(0, 0, 1, 0)] * 3 + [(0, 0, 0, 1)] * 3 + [(1, 1, 0, 0)] * 8


@pytest.mark.slow
def test_smoke_variants_train_evaluate_and_render(tmp_path):
    source = write_benchmark(tmp_path / "src", get_spec("bcss-wsss"), LABELS, style="run", n_val=2, n_test=1, size=64)
    results = tmp_path / "quality.json"
    argv = [sys.executable, str(TOOL), "--source", str(source), "--name", "tiny", "--work", str(tmp_path / "work"),
            "--results", str(results), "--variants", "onelabel,full", "--iters", "2", "--count", "8", "--size", "64",
            "--crop", "64", "--synthetic-per-step", "2", "--disc-epochs", "1", "--disc-image-size", "32",
            "--negatives", "12", "--parallel", "1", "--workers", "1", "--overlays", "1"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    records = json.loads(results.read_text())
    assert sorted(r["variant"] for r in records) == ["full", "onelabel"]
    for record in records:
        assert 0 <= record["mIoU"] <= 100 and 0 <= record["fwIoU"] <= 100
        assert set(record["IoU"]) == {"TUM", "STR", "LYM", "NEC"}
        assert record["eval_images"] == 3 and record["pixels"] > 0
    full = next(r for r in records if r["variant"] == "full")
    assert full["real_per_step"] == 2 and next(r for r in records if r["variant"] == "onelabel")["real_per_step"] == 0
    assert list((tmp_path / "work" / "runs").glob("full-s0-i2/prediction-0.png"))
    # a second call finds the results and trains nothing
    again = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and len(json.loads(results.read_text())) == 2
    table = subprocess.run([sys.executable, str(TOOL), "--render", str(results)], capture_output=True, text=True)
    assert "| onelabel | 1 |" in table.stdout and "| full | 1 |" in table.stdout
    # --precision bf16 is a measurement of its own: it trains (through BF16OptimWrapper) and is listed apart
    bf16 = subprocess.run([*argv[:argv.index("--variants") + 1], "onelabel", *argv[argv.index("--variants") + 2:],
                           "--precision", "bf16"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert bf16.returncode == 0, bf16.stdout[-2000:] + bf16.stderr[-3000:]
    records = json.loads(results.read_text())
    assert [(r["variant"], r["precision"]) for r in records[2:]] == [("onelabel", "bf16")]
    assert "BF16OptimWrapper" in next((tmp_path / "work" / "runs" / "onelabel-s0-i2-bf16").glob("*.py")).read_text()
    table = subprocess.run([sys.executable, str(TOOL), "--render", str(results)], capture_output=True, text=True)
    assert "| onelabel | 1 |" in table.stdout and "| onelabel, bf16 | 1 |" in table.stdout
    assert "- mIoU `onelabel` bf16 - fp32: " in table.stdout

    # the class mix printed for each corpus is what its mask PNGs hold
    mix = subprocess.run([sys.executable, str(TOOL), "--class-mix", str(tmp_path / "work")], capture_output=True, text=True)
    assert mix.returncode == 0, mix.stderr
    printed = {cells[0]: [float(c.rstrip("%")) for c in cells[2:]]
               for cells in ([c.strip() for c in line.strip("|").split("|")] for line in mix.stdout.splitlines()[2:])}
    assert {"onelabel", "mosaic-filtered", "bezier-filtered"} <= set(printed)
    for name, shares in printed.items():
        masks = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "work" / "corpora" / name / "masks").glob("*.png"))]
        counts = sum(np.bincount(m.ravel(), minlength=256) for m in masks)
        expected = [100 * counts[c] / counts.sum() for c in (0, 1, 2, 3, 255)]
        assert np.allclose(shares, expected, atol=0.06), (name, shares, expected)

    # with --source it adds the evaluation masks' shares (background excluded) and the majority-class floor
    mix = subprocess.run([sys.executable, str(TOOL), "--class-mix", str(tmp_path / "work"), "--source", str(source)],
                         capture_output=True, text=True)
    assert mix.returncode == 0, mix.stderr
    row = next(line for line in mix.stdout.splitlines() if line.startswith("| held-out masks"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    spec = get_spec("bcss-wsss")
    masks = [np.asarray(Image.open(p)) for p in sorted(source.glob(f"*/{spec.mask_dir}/*.png"))]
    assert len(masks) == int(cells[1]) == 3
    counts = sum(np.bincount(m.ravel(), minlength=256)[:spec.num_classes] for m in masks)
    expected = 100 * counts / counts.sum()
    assert np.allclose([float(c.rstrip("%")) for c in cells[2:2 + spec.num_classes]], expected, atol=0.06)
    assert f"mIoU {expected.max() / spec.num_classes:.1f} " in mix.stdout


def load_tool():
    spec = importlib.util.spec_from_file_location("bench_quality", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_param_runs_are_measured_labelled_and_paired_apart_from_plain_ones():
    tool = load_tool()
    styled = {"stain": "reinhard", "feather": "3"}
    assert tool.parse_strategy_params(["stain=reinhard", "feather=3"]) == styled
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        tool.parse_strategy_params(["stain"])
    # the parameters apply to unfiltered corpora only
    assert tool.variant_params("mosaic+bezier", styled) == styled and tool.variant_params("full", styled) is None
    assert tool.variant_params("mosaic+bezier", {}) is None
    settings = {"dataset": "tiny", "variant": "mosaic+bezier", "seed": 0}
    plain = [{**settings, "mIoU": 30.0, "selection": None}, {**settings, "seed": 1, "mIoU": 31.0, "selection": None}]
    # a plain record (no "params" key) does not count as a styled run, nor a styled one as plain
    assert tool.measured_already(plain, settings, "fp32", None, None)
    assert not tool.measured_already(plain, settings, "fp32", None, styled)
    rows = plain + [{**r, "mIoU": r["mIoU"] + 2.5 - r["seed"], "params": styled} for r in plain]
    assert tool.measured_already(rows, settings, "fp32", None, styled)
    assert not tool.measured_already(rows, settings, "fp32", None, {"stain": "macenko"})
    assert [tool.record_label(r) for r in rows] == ["mosaic+bezier"] * 2 + ["mosaic+bezier, stain=reinhard, feather=3"] * 2
    assert ("- mIoU `mosaic+bezier, stain=reinhard, feather=3` - `mosaic+bezier`: +2.5 (seed 0), +1.5 (seed 1) (mean +2.0)"
            in tool.paired_differences(rows))
    # a bf16 run pairs with the fp32 run of its own parameters, not with a styled one of the same variant
    rows.append({**plain[0], "mIoU": 29.0, "precision": "bf16"})
    assert "- mIoU `mosaic+bezier` bf16 - fp32: -1.0 (seed 0)" in tool.paired_differences(rows)


def test_filtered_runs_are_labelled_by_their_selection():
    from hisyngen.filtering.select import Selection

    tool = load_tool()
    row = {"dataset": "tiny", "variant": "full", "seed": 0, "mIoU": 30.0}
    assert tool.record_label({**row, "selection": Selection().to_dict()}) == "full"
    # a record from before selections were recorded was rank with quotas only
    assert tool.record_label(row) == "full, no area matching"
    assert tool.record_selection({**row, "variant": "full-paper"}) == Selection.paper().to_dict()
    assert tool.record_selection({**row, "variant": "mosaic+bezier"}) is None
    # another oversample is a row of its own, with or without area matching
    for selection in (Selection(oversample=3.0), Selection(oversample=3.0, match_area=False)):
        label = tool.record_label({**row, "selection": selection.to_dict()})
        assert label == f"full, {selection.describe()}" and "3 x count" in label

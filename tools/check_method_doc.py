"""Check that every default docs/method.md states is the code's default.

    python tools/check_method_doc.py          # prints each checked row; exit 1 on any mismatch

Table rows of the form ``| `name` | `default` | ...`` are read under their heading and compared
with the dataclass, function, command-line or config default they document; the training table
and the baselines are checked against the MMSegmentation configs and strategy classes directly.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "method.md"


def normalise(value):
    """Tuples and lists compare equal; floats and ints compare by value."""
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def doc_rows() -> dict[str, dict[str, str]]:
    """{heading: {name: default cell}} for rows whose first two cells are backquoted."""
    rows: dict[str, dict[str, str]] = {}
    heading = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            continue
        match = re.match(r"\| `([^`]+)`(?: \([^)]*\))? \| (`[^|]+`(?: / `[^|]+`)?) \|", line)
        if match:
            rows.setdefault(heading, {})[match.group(1)] = match.group(2)
    return rows


def literal(cell: str):
    return ast.literal_eval(cell.strip().strip("`"))


def main() -> int:
    import click
    from click.testing import CliRunner

    from hisyngen.cli import cli
    from hisyngen.filtering import filter as filter_module
    from hisyngen.filtering.realism import kernel_inception_distance, realism_report
    import hisyngen.filtering.realism as realism_module
    from hisyngen.filtering.select import Selection
    from hisyngen.filtering.train import TrainConfig, recalibrate_batchnorm, train_filter
    from hisyngen.filtering.data import class_matched_weights
    from hisyngen.sources.background import BackgroundParams
    from hisyngen.synthesis import make_strategy

    def fields(obj) -> dict:
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}

    def params(func) -> dict:
        return {k: p.default for k, p in inspect.signature(func).parameters.items()}

    def option_defaults(command: str) -> dict:  # as the command resolves them (some are read from the library)
        ctx = click.Context(cli.commands[command])
        return {p.name: p.get_default(ctx) for p in cli.commands[command].params}

    build = yaml.safe_load(CliRunner().invoke(cli, ["build", "--print-config"]).output)

    def flat(node, prefix=""):
        out = {}
        for k, v in node.items():
            if isinstance(v, dict) and k != "params" and v:
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    filter_options = option_defaults("filter")
    expected = {
        "Sources and single-tissue pools": fields(BackgroundParams()),
        "Parameters every strategy has": fields(make_strategy("mosaic")),
        "Mosaic (`mosaic`)": fields(make_strategy("mosaic")),
        "Bezier (`bezier`)": fields(make_strategy("bezier")),
        "Discriminator": {**fields(TrainConfig()), "negatives": params(train_filter)["negatives"],
                          "real_from": params(train_filter)["real_from"]},
        "Filtering and selection": {**fields(Selection()), "PROBE": filter_module.PROBE,
                                    "batch_size": filter_module.DEFAULT_BATCH,
                                    "max_attempts": params(filter_module.filter_corpus)["max_attempts"],
                                    "workers": filter_options["workers"], "count": filter_options["count"]},
        "Build configuration": flat(build),
    }
    problems, checked = [], 0
    rows = doc_rows()
    for heading, want in expected.items():
        for name, cell in rows.get(heading, {}).items():
            checked += 1
            if name not in want:
                problems.append(f"{heading}: {name} is not a setting of the code")
            elif normalise(literal(cell)) != normalise(want[name]):
                problems.append(f"{heading}: {name} = {cell} in the doc, {want[name]!r} in the code")

    # Completeness: every setting of these objects has a row (export.* is described in prose).
    complete = {"Discriminator": fields(TrainConfig()),
                "Build configuration": {k: v for k, v in flat(build).items() if not k.startswith("export.")}}
    for heading, want in complete.items():
        missing = sorted(set(want) - set(rows.get(heading, {})))
        if missing:
            problems.append(f"{heading}: no row for {', '.join(missing)}")
    strategy_rows = {**rows.get("Parameters every strategy has", {}), **rows.get("Mosaic (`mosaic`)", {}),
                     **rows.get("Bezier (`bezier`)", {})}
    from hisyngen.synthesis.registry import strategy_names

    for strategy_name in strategy_names():
        missing = sorted(set(fields(make_strategy(strategy_name))) - set(strategy_rows))
        if missing:
            problems.append(f"strategy {strategy_name}: no row for {', '.join(missing)}")
    build_export = build["export"]
    if normalise(build_export) != {"formats": ["mmseg", "hf"], "license": None, "tags": []}:
        problems.append(f"Exports: the build's export section is {build_export}")
    checked += 1

    # Realism: "`command` / `build`" defaults, and the single value of image_size.
    realism_cli = option_defaults("realism")
    for name, cell in rows.get("Realism report", {}).items():
        checked += 1
        values = [literal(v) for v in cell.split(" / ")]
        code = [realism_cli[name], build["realism"][name]]
        if normalise(values if len(values) == 2 else values * 2) != normalise(code):
            problems.append(f"Realism report: {name} = {cell} in the doc, {code} (command / build) in the code")
    if params(realism_report)["max_images"] != realism_cli["max_images"]:
        problems.append("realism_report's max_images default differs from the realism command's")

    # Facts stated in prose and in the baselines and training tables.
    import mmengine

    base = ROOT / "mmseg_configs"
    paper = {name: mmengine.Config.fromfile(base / f"deeplabv3plus_r50-d8_{name}.py")
             for name in ("bcss-wsss", "luad-histoseg", "wsss4luad")}
    cfg = paper["bcss-wsss"]
    head = cfg.model.decode_head
    pipeline = {t["type"]: t for t in cfg.train_pipeline}
    flips = [t for t in cfg.train_pipeline if t["type"] == "RandomFlip"]
    from hisyngen.mmseg.datasets import HOLDOUT_EVERY
    from hisyngen.mmseg.heads import CAMConsistencyHead

    head_defaults = params(CAMConsistencyHead.__init__)
    stage2 = mmengine.Config.fromfile(base / "deeplabv3plus_r50-d8_bcss-wsss_stage2.py")
    facts = {
        "gridded grid 2": make_strategy("gridded").grid == 2,
        "mosaic-nosplice grid 1": make_strategy("mosaic-nosplice").grid == 1,
        "cutmix pairs None": make_strategy("cutmix").pairs is None,
        "onelabel has only the common parameters": set(fields(make_strategy("onelabel")))
        == {"size", "background_policy", "max_background", "max_redraws", "allow_missing_classes"},
        "IPF 50 rounds, clip 10": params(class_matched_weights)["iterations"] == 50
        and params(class_matched_weights)["max_ratio"] == 10.0,
        "BN recalibration on 1,024 images": params(recalibrate_batchnorm)["max_images"] == 1024,
        "max_attempts = max(1000 x N, 2000)": filter_module.default_max_attempts(1) == 2000
        and filter_module.default_max_attempts(3600) == 3_600_000,
        "KID 50 subsets of 100": params(kernel_inception_distance)["subsets"] == 50
        and params(kernel_inception_distance)["subset_size"] == 100,
        "realism: halves, judge's best epoch on 20%": realism_module.JUDGE_VAL_FRACTION == 0.5
        and "TrainConfig(val_fraction=JUDGE_VAL_FRACTION)" in inspect.getsource(realism_report)
        and '"val_fraction": 0.2' in inspect.getsource(realism_report),
        "loss weights 1, 1, 1": (head.loss_decode.loss_weight, head.loss_cls.loss_weight,
                                 head.loss_reg.loss_weight) == (1.0, 1.0, 1.0),
        "head default weights 1": all(head_defaults[k]["loss_weight"] == 1.0
                                      for k in ("loss_decode", "loss_cls", "loss_reg")),
        "cam_dropout 0.5": head.cam_dropout == 0.5 and head_defaults["cam_dropout"] == 0.5,
        "batch 64, ratio 1:1": cfg.train_dataloader.batch_size == 64
        and tuple(cfg.train_dataloader.batch_sampler.ratio) == (1, 1),
        "AdamW 1e-4 wd 0.05": (cfg.optim_wrapper.optimizer.type, cfg.optim_wrapper.optimizer.lr,
                               cfg.optim_wrapper.optimizer.weight_decay) == ("AdamW", 1e-4, 0.05)
        and "param_scheduler" not in cfg,
        "epochs 25/25/60": [paper[n].epochs for n in ("bcss-wsss", "luad-histoseg", "wsss4luad")] == [25, 25, 60],
        "num_synthetic 14400/7200/7200": [paper[n].num_synthetic for n in ("bcss-wsss", "luad-histoseg", "wsss4luad")]
        == [14400, 7200, 7200],
        "crop 224, RRC 0.9-1": tuple(cfg.crop_size) == (224, 224) and tuple(pipeline["RandomResizedCrop"]["scale"])
        == (0.9, 1.0),
        "flips h+v p 0.5": sorted((f["direction"], f["prob"]) for f in flips) == [("horizontal", 0.5), ("vertical", 0.5)],
        "SSR 0.0625/0.1/45 p 0.5": [pipeline["ShiftScaleRotate"][k] for k in ("shift_limit", "scale_limit", "rotate_limit", "prob")]
        == [0.0625, 0.1, 45, 0.5],
        "OD 0.05/0.05 p 0.5": [pipeline["OpticalDistortion"][k] for k in ("distort_limit", "shift_limit", "prob")]
        == [0.05, 0.05, 0.5],
        "PhotoMetricDistortion with mmseg's defaults": pipeline["PhotoMetricDistortion"] == {"type": "PhotoMetricDistortion"},
        "best mIoU checkpoint, validated each epoch": cfg.default_hooks.checkpoint.save_best == "mIoU"
        and cfg.train_cfg.val_interval == cfg.iters_per_epoch,
        "seed 0": cfg.randomness.seed == 0,
        "stage 2: no L_reg, L_seg on real, pseudo masks": stage2.model.decode_head.loss_reg is None
        and stage2.model.decode_head.seg_on_real is True and stage2.train_dataloader.dataset.real_masks == "pseudo",
        "wsss4luad strides 224/112": any(h.get("type") == "EvalStrideHook" and tuple(h["val_stride"]) == (224, 224)
                                         and tuple(h["test_stride"]) == (112, 112) for h in paper["wsss4luad"].custom_hooks),
        "every 20th synthetic image held out": HOLDOUT_EVERY == 20,
    }
    for name, ok in facts.items():
        checked += 1
        if not ok:
            problems.append(f"stated in the text but not the code: {name}")
    for line in problems:
        print("MISMATCH", line)
    print(f"{checked} defaults checked, {len(problems)} mismatches")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

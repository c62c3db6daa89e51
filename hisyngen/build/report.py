"""What a finished build reports: its summary (``OUT/summary.json``), the training commands it
prints, and the human-readable end-of-build table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hisyngen.build.stages import Build


def train_commands(dataset: str, export_dir: Path, work_root: Path) -> dict[str, Any]:
    """The summary's training commands for an MMSeg export (runs go to ``work_root/<config>``).

    ``train_commands``: :func:`hisyngen.train_plan.machine_train_commands`, the one that finishes on
    this machine first (``train_command`` is its text); ``stock_train_command``: the paper's R50-D8
    with the stock script, carrying what ``hisyngen train`` would set for this export (data root,
    class count, iterations for the config's epochs on its number of synthetic images, no pretrained
    weights when they are not cached); None without the OpenMMLab extra.
    """
    from hisyngen.mmseg_launch import export_options, load_mmseg_config, schedule_options, stock_tool
    from hisyngen.extras import missing_openmmlab
    from hisyngen.train_plan import machine_train_commands, paper_config

    commands = machine_train_commands(dataset, export_dir, work_root)
    out: dict[str, Any] = {"train_commands": [c.as_dict() for c in commands], "train_command": commands[0].text,
                           "stock_train_command": None}
    if missing_openmmlab():  # the core install: fitting the stock command to the export needs mmengine
        return out
    config = paper_config(dataset)
    root = str(export_dir.resolve())
    cfg = load_mmseg_config(config)
    options = export_options(cfg, root)[0] + schedule_options(cfg, root, 1, None)[0]
    paper = next(c for c in commands if c.device == "gpu")
    if "--no-pretrained" in paper.args:
        options.append("model.pretrained=None")
    out["stock_train_command"] = (f"python {stock_tool('train')} {config} --work-dir {paper.work_dir} "
                                  f"--cfg-options {' '.join(options)}")
    return out


def build_summary(build: Build, results: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The summary of a build whose stages returned ``results``."""
    strategies = {}
    realism = results.get("realism", {}).get("corpora", {})
    for name in build.strategies:
        corpus = results[f"corpus-{name}"]
        strategies[name] = {
            "kept": corpus["kept"], "attempted": corpus["attempted"], "acceptance_rate": corpus["acceptance_rate"],
            "discriminator": results.get(f"discriminator-{name}", {}).get("heldout"),
            "realism": realism.get(name), "corpus": corpus["corpus"],
            "preview": results[f"preview-{name}"]["preview"],
            **{k: corpus[k] for k in ("selection", "strata", "class_mix") if k in corpus},
        }
    exports = {fmt: results[f"export-{fmt}"] for fmt in build.config["export"]["formats"]}
    summary = {"source": str(build.source.root), "dataset": build.dataset, "out": str(build.out),
               "filtered": bool(build.config["filter"]), "count_per_strategy": build.count,
               "strategies": strategies, "exports": exports, "push": results.get("push"),
               "seconds_this_run": round(seconds, 2), "precision": build.precision()}
    if "mmseg" in exports:
        from hisyngen.train_plan import WORK_FOLDER

        summary.update(train_commands(build.dataset, Path(exports["mmseg"]["path"]), build.out / WORK_FOLDER))
    return summary


def render_summary(summary: dict[str, Any]) -> str:
    """Human-readable end-of-build report."""
    pct = lambda v: "n/a" if v is None else f"{v:.1%}"  # noqa: E731
    lines = [f"built {summary['out']} from {summary['source']} ({summary['dataset']}) "
             f"in {summary['seconds_this_run']:.0f}s this run", ""]
    lines[1:1] = [f"warning: {w}" for w in summary.get("warnings", [])]
    header = "| strategy | kept | attempted | acceptance | disc. accuracy | disc. F1 | disc. ROC-AUC | realism 2-sample acc. | FD | KID |"
    lines += [header, "|---" * (header.count("|") - 1) + "|"]
    for name, s in summary["strategies"].items():
        d = s["discriminator"] or {}
        r = s["realism"] or {}
        lines.append(f"| {name} | {s['kept']:,} | {s['attempted']:,} | {pct(s['acceptance_rate'])} | {pct(d.get('accuracy'))} "
                     f"| {pct(d.get('f1'))} | {d.get('roc_auc', float('nan')):.3f} | {pct(r.get('c2st_accuracy'))} "
                     f"| {r.get('frechet_distance', float('nan')):.2f} | {1e3 * r.get('kid', float('nan')):.2f}e-3 |")
    mixes = [(name, s["class_mix"]) for name, s in summary["strategies"].items() if s.get("class_mix")]
    if mixes:
        from hisyngen.filtering.select import render_class_mix

        lines += ["", "class pixel share, candidates -> kept (per-stratum quotas keep it; corpus.json has every stratum):"]
        lines += [f"  {name}: {render_class_mix(mix)}" for name, mix in mixes]
    lines.append("")
    for fmt, e in summary["exports"].items():
        counts = ", ".join(f"{k} {v:,}" for k, v in e["counts"].items())
        lines.append(f"export {fmt}: {e['path']} ({counts})")
    for name, s in summary["strategies"].items():
        lines.append(f"preview {name}: {s['preview']}")
    if summary.get("push"):
        lines.append(f"pushed: {summary['push'].get('url', summary['push'])}")
    if summary.get("train_commands"):
        lines += ["", "train DeepLabV3+ on it:"]
        for command in summary["train_commands"]:
            lines += [f"  {command['label']}:", f"    {command['command']}"]
            if command.get("note"):
                lines.append(f"    ({command['note']})")
        if summary.get("stock_train_command"):
            lines += ["  or the paper's config with the stock MMSegmentation script:", f"    {summary['stock_train_command']}"]
        else:
            from hisyngen.extras import OPENMMLAB_INSTALL

            lines.append(f"  (training needs MMSegmentation: {OPENMMLAB_INSTALL})")
    return "\n".join(lines)

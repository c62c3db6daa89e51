"""``hisyngen build``: weakly-labelled source -> filtered synthetic corpora -> MMSeg + HF exports.

Stages (each records a marker in ``OUT/.stages/`` only after its outputs are complete; the corpus
stages resume from their own chunk files, exports are renamed into place whole)::

    inspect                    OUT/inspect.json
    discriminator-<strategy>   OUT/filters/<strategy>/{model.pt,report.json}     (unless filter: false)
    corpus-<strategy>          OUT/corpora/<strategy>/                           (filtered or plain)
    preview-<strategy>         OUT/previews/<strategy>.png
    realism                    OUT/realism.json                                  (realism.enabled)
    export-mmseg, export-hf    OUT/export/{mmseg,hf}/
    push                       the Hub                                            (push_to_hub)

A rerun skips finished stages and continues an interrupted one, so a run killed at any point ends
with the same corpora, models and exports as an uninterrupted run (reports carry timings), given the
same torch thread count: the order of floating-point sums in training depends on it (and CUDA
training is not bit-reproducible), so a discriminator stage interrupted and rerun with another
thread count, or on a GPU, retrains to slightly different weights. The resolved configuration is stored in
``OUT/build.yaml``; a rerun with other settings is refused.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hisyngen.errors import HisynError
from hisyngen.imageio import atomic_write_text

DEFAULTS: dict[str, Any] = {
    "dataset": None,  # force a built-in layout (wsss4luad, bcss-wsss, luad-histoseg); default: detect
    "spec": None,  # or a YAML/JSON dataset spec file
    "strategies": ["mosaic", "bezier"],
    "count": None,  # kept samples per strategy; default: 7200 for bcss-wsss, else 3600 (the paper)
    "seed": 0,
    "filter": True,  # train a discriminator per strategy and keep only samples it scores as real
    "workers": None,  # synthesis processes; default: all CPUs
    "device": "auto",  # discriminator device: auto (CUDA when available), cpu, cuda, cuda:1
    "cache_dir": None,  # decoded single-tissue pool; default: OUT/cache
    "synthesis": {
        "size": 224,
        "background_policy": "ignore",
        "max_background": 0.8,
        "allow_missing_classes": False,
        "params": {},  # per strategy, e.g. {bezier: {points: 12}}
    },
    "discriminator": {
        "epochs": None,  # default: 5, or 3 for BCSS-WSSS Mosaic (the paper)
        "batch_size": 256,
        "lr": 0.001,
        "negatives": 1000,
        "real_from": "multi",
        "image_size": 224,
        "val_fraction": 0.2,
        "num_workers": 0,
        "min_steps_per_epoch": 8,  # small sets: the batch is capped so an epoch has this many steps
    },
    "threshold": 0.5,
    "max_attempts": None,  # per strategy; default: max(20 x count, 2000)
    "filter_batch_size": 64,
    "filter_workers": 1,
    "realism": {"enabled": True, "max_images": 500, "epochs": 3, "image_size": 224},
    "export": {"formats": ["mmseg", "hf"], "license": None, "tags": []},
    "push_to_hub": None,  # user/name
    "private": False,
    "revision": None,
}

# Settings that change how a build runs (or when it gives up) but not what it produces.
NOT_IDENTITY = ("workers", "device", "cache_dir", "push_to_hub", "private", "revision", "filter_workers", "max_attempts")


def paper_count(dataset: str) -> int:
    """Kept samples per strategy in the paper: 7,200 for BCSS-WSSS, 3,600 otherwise."""
    return 7200 if dataset == "bcss-wsss" else 3600


def paper_epochs(dataset: str, strategy: str) -> int:
    """Discriminator epochs in the paper: 3 for BCSS-WSSS Mosaic, 5 otherwise."""
    return 3 if (dataset, strategy) == ("bcss-wsss", "mosaic") else 5


def merge_config(base: dict[str, Any], override: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """``base`` updated by ``override`` recursively; unknown keys and values of the wrong type
    (judged against :data:`DEFAULTS`) are refused."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if key not in out:
            raise HisynError(f"{where}: unknown setting {key!r}; known: {', '.join(out)}")
        if isinstance(out[key], dict) and key != "params":
            if not isinstance(value, dict):
                raise HisynError(f"{where}: {key} must be a mapping")
            out[key] = merge_config(out[key], value, f"{where}.{key}")
        else:
            out[key] = _checked(f"{where}.{key}", _default_of(where, key, out[key]), value)
    return out


def _default_of(where: str, key: str, current: Any) -> Any:
    """The DEFAULTS value of ``where.key`` (its type judges an override)."""
    node: Any = DEFAULTS
    for part in [*where.split(".")[1:], key]:
        node = node.get(part) if isinstance(node, dict) else None
    return node if node is not None else current


_NUMERIC_OR_NONE = {"count", "max_attempts", "workers", "epochs"}


def _checked(name: str, default: Any, value: Any) -> Any:
    """``value`` if its type suits the setting ``name`` whose default is ``default``."""
    key = name.rsplit(".", 1)[-1]
    if value is None:
        return None
    if key in _NUMERIC_OR_NONE:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, list):
        ok = isinstance(value, list) or (key == "strategies" and isinstance(value, str))
    elif default is None or isinstance(default, str):
        ok = isinstance(value, str) or key == "params"
    else:
        ok = True
    if not ok:
        expected = "an integer (or null for the default)" if key in _NUMERIC_OR_NONE else f"a value like {default!r}"
        raise HisynError(f"{name}: {value!r} is not valid; expected {expected}")
    return copy.deepcopy(value)


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """DEFAULTS, updated by the YAML file at ``path``, then by ``overrides`` (command-line options)."""
    import yaml

    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise HisynError(f"cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise HisynError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise HisynError(f"{path}: a build config must be a mapping of settings")
        config = merge_config(config, data, str(path))
    return merge_config(config, overrides, "command line")


def default_config_text() -> str:
    """The defaults as commented YAML (``hisyngen build --print-config``)."""
    import yaml

    return ("# hisyngen build configuration (defaults). Pass with --config FILE; command-line options win.\n"
            + yaml.safe_dump(DEFAULTS, sort_keys=False, default_flow_style=False))


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in NOT_IDENTITY}


def train_commands(dataset: str, export_dir: Path, num_classes: int) -> tuple[str, str]:
    """(hisyngen train command, plain stock mmseg command) for an MMSeg export."""
    from hisyngen.configs import mmseg_config_path, stock_tool

    try:
        config = mmseg_config_path(dataset)
        extra = ""
    except HisynError:  # custom dataset: the BCSS config with the class count of this one
        config = mmseg_config_path("bcss-wsss")
        extra = f" model.decode_head.num_classes={num_classes}"
    root = export_dir.resolve()
    hisyngen = f"hisyngen train {config.stem} --data-root {root}" + (f" --cfg-options{extra}" if extra else "")
    stock = (f"python {stock_tool('train')} {config} --cfg-options train_dataloader.dataset.data_root={root} "
             f"val_dataloader.dataset.data_root={root} test_dataloader.dataset.data_root={root}{extra}")
    return hisyngen, stock


class _PoolCounts:
    """Class sizes of the single-tissue pools, enough for ``Strategy.check_pool``."""

    def __init__(self, by_class: list[Any]) -> None:
        self.by_class = by_class
        self.num_classes = len(by_class)


class Build:
    """One build folder: its configuration, stage markers and the stage runner."""

    def __init__(self, source_root: str | Path, out: str | Path, config: dict[str, Any], command: str | None = None,
                 token: str | None = None, progress: bool = True, log: Callable[[str], None] = print) -> None:
        from hisyngen.sources import open_source

        self.out = Path(out)
        self.config = config
        self.command = command
        self.token = token
        self.progress = progress
        self.log = log
        self.source = open_source(source_root, dataset=config["dataset"], spec=config["spec"])
        self.dataset = self.source.spec.name
        self.count = paper_count(self.dataset) if config["count"] is None else int(config["count"])
        if self.count < 1:
            raise HisynError(f"count must be >= 1, got {self.count}")
        if int(config["seed"]) < 0:
            raise HisynError(f"seed must be >= 0, got {config['seed']}")
        strategies = config["strategies"]
        if isinstance(strategies, str):
            strategies = [s.strip() for s in strategies.split(",") if s.strip()]
        if not strategies or len(set(strategies)) != len(strategies):
            raise HisynError(f"strategies must be a non-empty list without repeats, got {strategies}")
        self.strategies = list(strategies)
        for fmt in config["export"]["formats"]:
            if fmt not in ("mmseg", "hf"):
                raise HisynError(f"export.formats: unknown format {fmt!r} (mmseg, hf)")
        if config["push_to_hub"] and "hf" not in config["export"]["formats"]:
            raise HisynError("push_to_hub needs the hf export format")
        self.cache_dir = Path(config["cache_dir"]) if config["cache_dir"] else self.out / "cache"
        self.strategy_objects = {name: self._strategy(name) for name in self.strategies}  # validates params early

    # --- bookkeeping ------------------------------------------------------------------------------

    def _strategy(self, name: str) -> Any:
        from hisyngen.synthesis import make_strategy

        synthesis = self.config["synthesis"]
        params = {"size": synthesis["size"], "background_policy": synthesis["background_policy"],
                  "max_background": synthesis["max_background"],
                  "allow_missing_classes": synthesis["allow_missing_classes"],
                  **(synthesis["params"] or {}).get(name, {})}
        return make_strategy(name, params, classes=self.source.spec.classes)

    def check_pools(self) -> None:
        """Refuse, before writing anything, a source whose single-tissue pools cannot serve a strategy."""
        pools = self.source.single_tissue_pools()
        counts = _PoolCounts([np.arange(len(pools[c])) for c in range(self.source.spec.num_classes)])
        for strategy in self.strategy_objects.values():
            strategy.check_pool(counts, self.source.spec.classes)

    def prepare(self) -> None:
        """Create OUT (or check that it holds this build) and store the configuration."""
        import yaml

        stored = self.out / "build.yaml"
        identity = {"source": str(Path(self.source.root).resolve()), **_identity(self.config)}
        if stored.is_file():
            previous = yaml.safe_load(stored.read_text())
            diffs = [f"{k}: {previous.get(k)!r} vs {identity.get(k)!r}" for k in sorted(set(previous) | set(identity))
                     if previous.get(k) != identity.get(k)]
            if diffs:
                raise HisynError(f"{self.out} holds a build with other settings ({'; '.join(diffs)}); "
                                 "choose another --out or delete it")
            return
        if self.out.exists() and any(self.out.iterdir()):
            raise HisynError(f"{self.out} exists and is not a hisyngen build folder; choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)  # build.yaml first: a build killed right after resumes
        atomic_write_text(stored, yaml.safe_dump(identity, sort_keys=True))

    def marker(self, stage: str) -> Path:
        (self.out / ".stages").mkdir(exist_ok=True)
        return self.out / ".stages" / f"{stage}.json"

    def done(self, stage: str) -> dict[str, Any] | None:
        path = self.marker(stage)
        return json.loads(path.read_text()) if path.is_file() else None

    def run_stage(self, number: int, total: int, stage: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        finished = self.done(stage)
        if finished is not None:
            self.log(f"[{number}/{total}] {stage}: already done")
            return finished
        self.log(f"[{number}/{total}] {stage} ...")
        started = time.perf_counter()
        result = work()
        result["seconds"] = round(time.perf_counter() - started, 2)
        atomic_write_text(self.marker(stage), json.dumps(result, indent=2) + "\n")
        return result

    # --- stages ---------------------------------------------------------------------------------------

    def stage_inspect(self) -> dict[str, Any]:
        from hisyngen.sources.inspect import inspect_source

        report = inspect_source(self.source, progress=self.progress)
        atomic_write_text(self.out / "inspect.json", json.dumps(report, indent=2) + "\n")
        return {"images": report["images"], "single_tissue": report["single_tissue"],
                "multi_tissue": report["multi_tissue"], "warnings": len(report["warnings"])}

    def stage_discriminator(self, name: str) -> dict[str, Any]:
        from hisyngen.filtering.train import TrainConfig, train_filter

        d = self.config["discriminator"]
        epochs = paper_epochs(self.dataset, name) if d["epochs"] is None else int(d["epochs"])
        config = TrainConfig(epochs=epochs, batch_size=d["batch_size"],
                             lr=d["lr"], val_fraction=d["val_fraction"], image_size=d["image_size"],
                             seed=self.config["seed"], num_workers=d["num_workers"], device=self.config["device"],
                             min_steps_per_epoch=d["min_steps_per_epoch"])
        report = train_filter(self.source, self.strategy_objects[name], self.out / "filters" / name, config,
                              negatives=d["negatives"], real_from=d["real_from"], cache_dir=self.cache_dir,
                              progress=self.progress)
        return {"model": report["model"], "heldout": {k: v for k, v in report["heldout"].items() if k != "confusion"},
                "split": report["split"], "best_epoch": report["best_epoch"], "device": report["device"]}

    def stage_corpus(self, name: str) -> dict[str, Any]:
        out = self.out / "corpora" / name
        strategy = self.strategy_objects[name]
        if self.config["filter"]:
            from hisyngen.filtering.filter import filter_corpus

            summary = filter_corpus(self.source, strategy, self.out / "filters" / name, out, self.count,
                                    seed=self.config["seed"], threshold=self.config["threshold"],
                                    max_attempts=self.config["max_attempts"], batch_size=self.config["filter_batch_size"],
                                    workers=self.config["filter_workers"], device=self.config["device"],
                                    cache_dir=self.cache_dir, progress=self.progress)
            return {"corpus": str(out), "kept": summary.kept, "attempted": summary.attempted,
                    "acceptance_rate": round(summary.acceptance_rate, 6)}
        from hisyngen.cli.synth import default_workers
        from hisyngen.corpus import synthesize

        workers = self.config["workers"] or default_workers()
        summary = synthesize(self.source, strategy, out, self.count, seed=self.config["seed"], workers=workers,
                             cache_dir=self.cache_dir, progress=self.progress)
        return {"corpus": str(out), "kept": summary.count, "attempted": summary.count, "acceptance_rate": 1.0}

    def stage_preview(self, name: str) -> dict[str, Any]:
        from hisyngen.preview import write_preview

        path = write_preview(self.out / "corpora" / name, self.out / "previews" / f"{name}.png")
        return {"preview": str(path)}

    def stage_realism(self) -> dict[str, Any]:
        from hisyngen.filtering.realism import realism_report
        from hisyngen.filtering.train import TrainConfig

        r = self.config["realism"]
        config = TrainConfig(epochs=r["epochs"], image_size=r["image_size"], seed=self.config["seed"],
                             device=self.config["device"], val_fraction=0.5,
                             batch_size=self.config["discriminator"]["batch_size"])
        report = realism_report([self.out / "corpora" / s for s in self.strategies], self.source,
                                real_from=self.config["discriminator"]["real_from"], max_images=r["max_images"],
                                config=config, progress=self.progress)
        atomic_write_text(self.out / "realism.json", json.dumps(report, indent=2) + "\n")
        return {"corpora": {Path(row["corpus"]).name: {k: row[k] for k in ("c2st_accuracy", "frechet_distance", "kid")}
                            for row in report["corpora"]}}

    def stage_export(self, fmt: str) -> dict[str, Any]:
        from hisyngen.export import export_dataset

        e = self.config["export"]
        summary = export_dataset([self.out / "corpora" / s for s in self.strategies], self.source, fmt,
                                 self.out / "export" / fmt, overwrite=True, command=self.command,
                                 license=e["license"], tags=list(e["tags"] or []) or None, progress=self.progress)
        return {"path": summary.out, "counts": summary.counts}

    def stage_push(self) -> dict[str, Any]:
        from hisyngen.export.push import push_export

        result = push_export(self.out / "export" / "hf", self.config["push_to_hub"], private=self.config["private"],
                             token=self.token, revision=self.config["revision"])
        return result if isinstance(result, dict) else {"url": str(result)}

    # --- the whole build ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.check_pools()
        self.prepare()
        plan: list[tuple[str, Callable[[], dict[str, Any]]]] = [("inspect", self.stage_inspect)]
        for name in self.strategies:
            if self.config["filter"]:
                plan.append((f"discriminator-{name}", lambda n=name: self.stage_discriminator(n)))
            plan.append((f"corpus-{name}", lambda n=name: self.stage_corpus(n)))
            plan.append((f"preview-{name}", lambda n=name: self.stage_preview(n)))
        if self.config["realism"]["enabled"]:
            plan.append(("realism", self.stage_realism))
        for fmt in self.config["export"]["formats"]:
            plan.append((f"export-{fmt}", lambda f=fmt: self.stage_export(f)))
        if self.config["push_to_hub"]:
            plan.append(("push", self.stage_push))
        results = {}
        for number, (stage, work) in enumerate(plan, start=1):
            results[stage] = self.run_stage(number, len(plan), stage, work)
        summary = self.summary(results, time.perf_counter() - started)
        atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary

    def summary(self, results: dict[str, Any], seconds: float) -> dict[str, Any]:
        strategies = {}
        realism = results.get("realism", {}).get("corpora", {})
        for name in self.strategies:
            corpus = results[f"corpus-{name}"]
            strategies[name] = {
                "kept": corpus["kept"], "attempted": corpus["attempted"], "acceptance_rate": corpus["acceptance_rate"],
                "discriminator": results.get(f"discriminator-{name}", {}).get("heldout"),
                "realism": realism.get(name), "corpus": corpus["corpus"],
                "preview": results[f"preview-{name}"]["preview"],
            }
        exports = {fmt: results[f"export-{fmt}"] for fmt in self.config["export"]["formats"]}
        summary = {"source": str(self.source.root), "dataset": self.dataset, "out": str(self.out),
                   "filtered": bool(self.config["filter"]), "count_per_strategy": self.count,
                   "strategies": strategies, "exports": exports, "push": results.get("push"),
                   "seconds_this_run": round(seconds, 2)}
        if "mmseg" in exports:
            summary["train_command"], summary["stock_train_command"] = train_commands(
                self.dataset, Path(exports["mmseg"]["path"]), self.source.spec.num_classes)
        return summary


def render_summary(summary: dict[str, Any]) -> str:
    """Human-readable end-of-build report."""
    pct = lambda v: "n/a" if v is None else f"{v:.1%}"  # noqa: E731
    lines = [f"built {summary['out']} from {summary['source']} ({summary['dataset']}) "
             f"in {summary['seconds_this_run']:.0f}s this run", ""]
    header = "| strategy | kept | attempted | acceptance | disc. accuracy | disc. F1 | disc. ROC-AUC | realism 2-sample acc. | FD | KID |"
    lines += [header, "|---" * (header.count("|") - 1) + "|"]
    for name, s in summary["strategies"].items():
        d = s["discriminator"] or {}
        r = s["realism"] or {}
        lines.append(f"| {name} | {s['kept']:,} | {s['attempted']:,} | {pct(s['acceptance_rate'])} | {pct(d.get('accuracy'))} "
                     f"| {pct(d.get('f1'))} | {d.get('roc_auc', float('nan')):.3f} | {pct(r.get('c2st_accuracy'))} "
                     f"| {r.get('frechet_distance', float('nan')):.2f} | {1e3 * r.get('kid', float('nan')):.2f}e-3 |")
    lines.append("")
    for fmt, e in summary["exports"].items():
        counts = ", ".join(f"{k} {v:,}" for k, v in e["counts"].items())
        lines.append(f"export {fmt}: {e['path']} ({counts})")
    for name, s in summary["strategies"].items():
        lines.append(f"preview {name}: {s['preview']}")
    if summary.get("push"):
        lines.append(f"pushed: {summary['push'].get('url', summary['push'])}")
    if summary.get("train_command"):
        lines += ["", "train DeepLabV3+ on it:", f"  {summary['train_command']}", "or with the stock MMSegmentation script:",
                  f"  {summary['stock_train_command']}"]
    return "\n".join(lines)

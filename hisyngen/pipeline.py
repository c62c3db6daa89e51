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
from hisyngen.filtering.select import Selection
from hisyngen.imageio import atomic_write_text
from hisyngen.safety import output_lock, user_entries, write_marker

DEFAULTS: dict[str, Any] = {
    "dataset": None,
    "spec": None,
    "strategies": ["mosaic", "bezier"],
    "count": None,
    "seed": 0,
    "filter": True,
    "workers": None,
    "device": "auto",
    "precision": "auto",
    "cache_dir": None,
    "synthesis": {
        "size": 224,
        "background_policy": "ignore",
        "max_background": 0.8,
        "allow_missing_classes": False,
        "params": {},
    },
    "discriminator": {
        "epochs": None,
        "batch_size": 256,
        "lr": 0.001,
        "negatives": 1000,
        "real_from": "multi",
        "image_size": 224,
        "val_fraction": 0.2,
        "num_workers": 0,
        "min_steps_per_epoch": 8,
        "match_classes": True,
    },
    "selection": Selection.mode,
    "stratify": Selection.stratify,
    "oversample": Selection.oversample,
    "threshold": Selection.threshold,
    "max_attempts": None,
    "filter_batch_size": 64,
    "filter_workers": 1,
    "realism": {"enabled": True, "max_images": 500, "epochs": 3, "image_size": 224},
    "export": {"formats": ["mmseg", "hf"], "license": None, "tags": []},
    "push_to_hub": None,
    "private": False,
    "revision": None,
}

NOTES: dict[str, str] = {
    "dataset": "force a built-in layout (wsss4luad, bcss-wsss, luad-histoseg); null: detect",
    "spec": "or a YAML/JSON dataset spec file",
    "strategies": "any of `hisyngen synth --list-strategies`",
    "count": "kept samples per strategy; null: 7200 for bcss-wsss, else 3600 (the paper)",
    "filter": "train a discriminator per strategy and keep only samples it scores as real",
    "workers": "synthesis processes; null: all CPUs",
    "device": "discriminator device: auto (CUDA when available), cpu, cuda, cuda:1",
    "precision": "discriminator arithmetic: auto (bf16 where native: AMX/AVX-512-BF16 CPU, Ampere+ GPU), fp32, bf16, fp16",
    "cache_dir": "decoded single-tissue pool; null: OUT/cache",
    "synthesis.background_policy": "ignore (white background -> 255) or tissue",
    "synthesis.max_background": "redraw a tile or source with more white background than this",
    "synthesis.params": "per strategy, e.g. {bezier: {points: 12}} (hisyngen synth --list-strategies)",
    "discriminator.epochs": "null: 5, or 3 for BCSS-WSSS Mosaic (the paper)",
    "discriminator.real_from": "real images: multi (two or more tissues), all, or a folder",
    "discriminator.match_classes": "weight synthetic images to the real images' class presence (false: the paper)",
    "discriminator.min_steps_per_epoch": "small sets: the batch is capped so an epoch has this many steps",
    "selection": "rank: keep the most realistic of oversample x count candidates; threshold: p_real > threshold "
                 "until count (the paper, with stratify: false)",
    "stratify": "per-stratum quotas (dominant class + classes present): the kept class mix is the unfiltered one",
    "oversample": "rank: candidates scored per kept sample",
    "threshold": "threshold: keep candidates with p_real above this",
    "max_attempts": "threshold: candidates per strategy at most; null: 1000 x count (a 0.1% acceptance floor)",
    "realism": "offline realism report: a judge discriminator, Frechet distance, KID",
    "push_to_hub": "user/name",
}
"""What a setting of :data:`DEFAULTS` means (by dotted name), printed by ``--print-config``."""

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
        if default is None or key in _NUMERIC_OR_NONE:
            return None
        raise HisynError(f"{name}: needs a value (like {default!r}); only settings whose default is null may be null")
    if isinstance(default, float) and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    if key in _NUMERIC_OR_NONE:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):  # 1.5 for a seed or a size would fail deep inside a stage
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, list):
        ok = isinstance(value, list) or (key == "strategies" and isinstance(value, str))
    elif key == "params":
        return _checked_params(name, value)
    elif default is None or isinstance(default, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        expected = ("an integer (or null for the default)" if key in _NUMERIC_OR_NONE
                    else "an integer" if isinstance(default, int) and not isinstance(default, bool)
                    else f"a value like {default!r}")
        raise HisynError(f"{name}: {value!r} is not valid; expected {expected}")
    return copy.deepcopy(value)


def _checked_params(name: str, value: Any) -> dict[str, dict[str, Any]]:
    """``synthesis.params``: strategy name -> mapping of that strategy's parameters."""
    from hisyngen.synthesis import STRATEGIES

    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise HisynError(f"{name}: expected a mapping of strategy -> parameters, e.g. {{bezier: {{points: 12}}}}; "
                         f"got {value!r}")
    unknown = [k for k in value if k not in STRATEGIES]
    if unknown:
        raise HisynError(f"{name}: unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
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


def config_text(config: dict[str, Any] | None = None) -> str:
    """A build configuration (default: the defaults) as YAML with the :data:`NOTES` as comments
    (``hisyngen build --print-config``)."""
    import yaml

    def emit(node: dict[str, Any], prefix: str, indent: str) -> list[str]:
        lines = []
        for key, value in node.items():
            note = NOTES.get(prefix + key)
            comment = f"  # {note}" if note else ""
            if isinstance(value, dict) and value:
                lines.append(f"{indent}{key}:{comment}")
                lines += emit(value, f"{prefix}{key}.", indent + "  ")
            else:
                text = yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip()
                text = text[: -len("...")].strip() if text.endswith("...") else text  # a scalar's end marker
                lines.append(f"{indent}{key}: {text}{comment}")
        return lines

    lines = ["# hisyngen build configuration. Pass with --config FILE; command-line options win."]
    return "\n".join(lines + emit(DEFAULTS if config is None else config, "", "")) + "\n"


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in NOT_IDENTITY}


def train_commands(dataset: str, export_dir: Path, work_root: Path) -> dict[str, Any]:
    """The summary's training commands for an MMSeg export (runs go to ``work_root/<config>``).

    ``train_commands``: :func:`hisyngen.train_plan.machine_train_commands`, the one that finishes on
    this machine first (``train_command`` is its text); ``stock_train_command``: the paper's R50-D8
    with the stock script, carrying what ``hisyngen train`` would set for this export (data root,
    class count, iterations for the config's epochs on its number of synthetic images, no pretrained
    weights when they are not cached); None without the OpenMMLab extra.
    """
    from hisyngen.configs import export_options, load_mmseg_config, schedule_options, stock_tool
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


class _PoolCounts:
    """Class sizes of the single-tissue pools, enough for ``Strategy.check_pool``."""

    def __init__(self, by_class: list[Any]) -> None:
        self.by_class = by_class
        self.num_classes = len(by_class)


class Build:
    """One build folder: its configuration, stage markers and the stage runner."""

    def __init__(self, source_root: str | Path, out: str | Path, config: dict[str, Any], command: str | None = None,
                 token: str | None = None, progress: bool = True, log: Callable[[str], None] = print,
                 allow_outside_root: bool = False) -> None:
        from hisyngen.sources import open_source

        self.out = Path(out)
        self.config = config
        self.command = command
        self.token = token
        self.progress = progress
        self.log = log
        self.source = open_source(source_root, dataset=config["dataset"], spec=config["spec"],
                                  allow_outside_root=allow_outside_root)
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
        self._check_settings()

    def _check_settings(self) -> None:
        """Refuse bad settings before anything is written: a late failure would leave a build folder
        whose stored settings then refuse the corrected rerun."""
        from hisyngen.filtering.data import REAL_FROM

        c = self.config
        problems = []
        if c["workers"] is not None and c["workers"] < 1:
            problems.append(f"workers must be >= 1, got {c['workers']}")
        if c["filter"]:
            try:
                self.selection()
            except HisynError as exc:
                problems.append(str(exc).replace("--", ""))
            if c["max_attempts"] is not None and c["selection"] == "rank":
                problems.append("max_attempts applies to selection: threshold (rank mode scores oversample x count)")
            if c["max_attempts"] is not None and c["max_attempts"] < self.count:
                problems.append(f"max_attempts ({c['max_attempts']}) is smaller than count ({self.count})")
            if c["filter_batch_size"] < 1 or c["filter_workers"] < 0:
                problems.append("filter_batch_size must be >= 1 and filter_workers >= 0")
        real_from = c["discriminator"]["real_from"]
        if (c["filter"] or c["realism"]["enabled"]) and real_from not in REAL_FROM and not Path(real_from).is_dir():
            problems.append(f"discriminator.real_from must be one of {', '.join(REAL_FROM)} or a folder of real "
                            f"images, got {real_from!r}")
        if c["realism"]["enabled"] and c["realism"]["max_images"] < 4:
            problems.append(f"realism.max_images must be >= 4, got {c['realism']['max_images']}")
        if c["realism"]["enabled"] and self.count < 4:
            problems.append(f"the realism report needs count >= 4 (half of each corpus is held out), got {self.count}; "
                            "or set realism: {enabled: false}")
        if problems:
            raise HisynError("; ".join(problems))
        try:
            if c["filter"]:
                for name in self.strategies:
                    self._discriminator_config(name)
            if c["realism"]["enabled"]:
                self._realism_config()
        except HisynError as exc:
            raise HisynError(f"discriminator/realism settings: {exc}") from None

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
        if self.out.exists() and user_entries(self.out):
            raise HisynError(f"{self.out} exists and is not a hisyngen build folder; choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)  # build.yaml first: a build killed right after resumes
        atomic_write_text(stored, yaml.safe_dump(identity, sort_keys=True))
        write_marker(self.out, "build")

    def marker(self, stage: str) -> Path:
        (self.out / ".stages").mkdir(exist_ok=True)
        return self.out / ".stages" / f"{stage}.json"

    def done(self, stage: str) -> dict[str, Any] | None:
        path = self.marker(stage)
        return json.loads(path.read_text()) if path.is_file() else None

    def run_stage(self, number: int, total: int, stage: str, work: Callable[[], dict[str, Any]],
                  key: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run ``work`` unless its marker says it is done (for the same ``key``: settings outside the
        build's identity, such as the push target, that still decide what the stage does)."""
        finished = self.done(stage)
        if finished is not None and finished.get("key") == key:
            self.log(f"[{number}/{total}] {stage}: already done")
            return finished
        self.log(f"[{number}/{total}] {stage} ...")
        started = time.perf_counter()
        result = work()
        if key is not None:
            result["key"] = key
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

    def _discriminator_config(self, name: str) -> Any:
        from hisyngen.filtering.train import TrainConfig

        d = self.config["discriminator"]
        epochs = paper_epochs(self.dataset, name) if d["epochs"] is None else int(d["epochs"])
        return TrainConfig(epochs=epochs, batch_size=d["batch_size"], lr=d["lr"], val_fraction=d["val_fraction"],
                           image_size=d["image_size"], seed=self.config["seed"], num_workers=d["num_workers"],
                           device=self.config["device"], precision=self.config["precision"],
                           min_steps_per_epoch=d["min_steps_per_epoch"],
                           match_classes=d["match_classes"])

    def precision(self) -> str:
        """The discriminators' precision ``precision: auto`` resolves to on this machine."""
        from hisyngen.filtering.train import resolve_device
        from hisyngen.precision import resolve_precision

        return resolve_precision(self.config["precision"], resolve_device(self.config["device"]))

    def _realism_config(self) -> Any:
        from hisyngen.filtering.train import TrainConfig

        r = self.config["realism"]
        return TrainConfig(epochs=r["epochs"], image_size=r["image_size"], seed=self.config["seed"],
                           device=self.config["device"], precision=self.config["precision"], val_fraction=0.5,
                           batch_size=self.config["discriminator"]["batch_size"])

    def stage_discriminator(self, name: str) -> dict[str, Any]:
        from hisyngen.filtering.train import train_filter

        d = self.config["discriminator"]
        report = train_filter(self.source, self.strategy_objects[name], self.out / "filters" / name,
                              self._discriminator_config(name),
                              negatives=d["negatives"], real_from=d["real_from"], cache_dir=self.cache_dir,
                              progress=self.progress)
        return {"model": report["model"], "heldout": {k: v for k, v in report["heldout"].items() if k != "confusion"},
                "split": report["split"], "best_epoch": report["best_epoch"], "device": report["device"],
                "precision": report["precision"]}

    def selection(self) -> Selection:
        c = self.config
        return Selection(mode=c["selection"], stratify=c["stratify"], oversample=c["oversample"], threshold=c["threshold"])

    def stage_corpus(self, name: str) -> dict[str, Any]:
        out = self.out / "corpora" / name
        strategy = self.strategy_objects[name]
        if self.config["filter"]:
            from hisyngen.filtering.filter import filter_corpus

            summary = filter_corpus(self.source, strategy, self.out / "filters" / name, out, self.count,
                                    seed=self.config["seed"], selection=self.selection(),
                                    max_attempts=self.config["max_attempts"], batch_size=self.config["filter_batch_size"],
                                    workers=self.config["filter_workers"], device=self.config["device"],
                                    precision=self.config["precision"], cache_dir=self.cache_dir, progress=self.progress)
            return {"corpus": str(out), "kept": summary.kept, "attempted": summary.attempted, "precision": summary.precision,
                    "acceptance_rate": round(summary.acceptance_rate, 6), "selection": summary.selection,
                    "strata": summary.strata, "class_mix": summary.class_mix}
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

        report = realism_report([self.out / "corpora" / s for s in self.strategies], self.source,
                                real_from=self.config["discriminator"]["real_from"],
                                max_images=self.config["realism"]["max_images"], config=self._realism_config(),
                                progress=self.progress)
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
        """Run (or resume) the build; another build into the same OUT meanwhile is refused."""
        self.check_pools()  # a source that cannot serve the strategies is refused before OUT is made
        with output_lock(self.out):
            return self._run()

    def _skipped_warning(self) -> str | None:
        """One line on the source files the build does not use (from inspect.json), or None."""
        from hisyngen.sources.inspect import skipped_warning

        try:
            report = json.loads((self.out / "inspect.json").read_text())
        except (OSError, ValueError):
            return None
        return skipped_warning(report.get("warnings", []), self.source.root)

    def _run(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.prepare()
        plan: list[tuple[str, Callable[[], dict[str, Any]]]] = [("inspect", self.stage_inspect)]
        keys: dict[str, dict[str, Any]] = {}
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
            keys["push"] = {k: self.config[k] for k in ("push_to_hub", "private", "revision")}
        results = {}
        warnings: list[str] = []
        for number, (stage, work) in enumerate(plan, start=1):
            results[stage] = self.run_stage(number, len(plan), stage, work, keys.get(stage))
            if stage == "inspect" and self._skipped_warning():
                warnings.append(self._skipped_warning())  # type: ignore[arg-type]
                self.log(f"warning: {warnings[-1]}")
        summary = self.summary(results, time.perf_counter() - started)
        summary["warnings"] = warnings
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
                **{k: corpus[k] for k in ("selection", "strata", "class_mix") if k in corpus},
            }
        exports = {fmt: results[f"export-{fmt}"] for fmt in self.config["export"]["formats"]}
        summary = {"source": str(self.source.root), "dataset": self.dataset, "out": str(self.out),
                   "filtered": bool(self.config["filter"]), "count_per_strategy": self.count,
                   "strategies": strategies, "exports": exports, "push": results.get("push"),
                   "seconds_this_run": round(seconds, 2), "precision": self.precision()}
        if "mmseg" in exports:
            from hisyngen.train_plan import WORK_FOLDER

            summary.update(train_commands(self.dataset, Path(exports["mmseg"]["path"]), self.out / WORK_FOLDER))
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

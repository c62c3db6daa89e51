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

import json
import time
from pathlib import Path
from typing import Any, Callable

from hisyngen.build.config import STRATEGY_KEYS, TRAIN_KEYS, identity, implied_by_older_build
from hisyngen.build.report import build_summary
from hisyngen.errors import HisynError
from hisyngen.filtering.select import Selection
from hisyngen.imageio import atomic_write_text
from hisyngen.safety import output_lock, user_entries, write_marker
from hisyngen.spec import paper_count, paper_epochs


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
        params = {**{key: synthesis[key] for key in STRATEGY_KEYS}, **(synthesis["params"] or {}).get(name, {})}
        return make_strategy(name, params, classes=self.source.spec.classes)

    def check_pools(self) -> None:
        """Refuse, before writing anything, a source whose single-tissue pools cannot serve a strategy."""
        pools = self.source.single_tissue_pools()
        import numpy as np

        counts = _PoolCounts([np.arange(len(pools[c])) for c in range(self.source.spec.num_classes)])
        for strategy in self.strategy_objects.values():
            strategy.check_pool(counts, self.source.spec.classes)

    def prepare(self) -> None:
        """Create OUT (or check that it holds this build) and store the configuration."""
        import yaml

        stored = self.out / "build.yaml"
        settings = {"source": str(Path(self.source.root).resolve()), **identity(self.config)}
        if stored.is_file():
            previous = yaml.safe_load(stored.read_text())
            previous = {**implied_by_older_build(previous, settings), **previous}
            diffs = [f"{k}: {previous.get(k)!r} vs {settings.get(k)!r}" for k in sorted(set(previous) | set(settings))
                     if previous.get(k) != settings.get(k)]
            if diffs:
                raise HisynError(f"{self.out} holds a build with other settings ({'; '.join(diffs)}); "
                                 "choose another --out, delete it, or set those in a --config file")
            return
        if self.out.exists() and user_entries(self.out):
            raise HisynError(f"{self.out} exists and is not a hisyngen build folder; choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)  # build.yaml first: a build killed right after resumes
        atomic_write_text(stored, yaml.safe_dump(settings, sort_keys=True))
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
        return TrainConfig(epochs=epochs, seed=self.config["seed"], device=self.config["device"],
                           precision=self.config["precision"], **{key: d[key] for key in TRAIN_KEYS})

    def precision(self) -> str:
        """The discriminators' precision ``precision: auto`` resolves to on this machine."""
        from hisyngen.filtering.train import resolve_device
        from hisyngen.precision import resolve_precision

        return resolve_precision(self.config["precision"], resolve_device(self.config["device"]))

    def _realism_config(self) -> Any:
        from hisyngen.filtering.realism import JUDGE_VAL_FRACTION
        from hisyngen.filtering.train import TrainConfig

        r = self.config["realism"]
        return TrainConfig(epochs=r["epochs"], image_size=r["image_size"], seed=self.config["seed"],
                           device=self.config["device"], precision=self.config["precision"],
                           val_fraction=JUDGE_VAL_FRACTION,
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
        return Selection(mode=c["selection"], stratify=c["stratify"], oversample=c["oversample"], threshold=c["threshold"],
                         match_area=c["match_area"])

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
        from hisyngen.corpus import synthesize
        from hisyngen.workers import default_workers

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
        return build_summary(self, results, seconds)

"""The build configuration: one dataclass tree holds every setting's default, type and note.

:class:`BuildConfig` is the schema; a configuration itself travels as the plain nested mapping
:func:`defaults` returns (what ``OUT/build.yaml`` stores and ``--print-config`` prints), so stored
settings of older builds compare equal. Where a section is a library class's settings, its fields
are that class's: ``discriminator`` borrows :class:`hisyngen.filtering.train.TrainConfig`'s fields
(type and default) and ``synthesis`` those of :class:`hisyngen.synthesis.Strategy`. Those two
sections are generated on first use, so reading the top-level defaults (the CLI's help) imports
neither torch nor OpenCV.

Validation (:func:`merge_config`) is strict: an integer setting refuses 1.5, a float accepts YAML
1.1's ``1e-4`` (read as a string), null is accepted only where the default is null, an unknown key
is refused with the known ones.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Callable

from hisyngen.errors import HisynError
from hisyngen.filtering.select import DEFAULT_BATCH, MAX_ATTEMPTS_DEFAULT, Selection
from hisyngen.spec import PAPER_COUNT, PAPER_COUNT_BY_DATASET, PAPER_EPOCHS, PAPER_EPOCHS_BY_RUN


def setting(default: Any = MISSING, note: str | None = None, *, factory: Callable[[], Any] | None = None,
            section: Callable[[], type] | None = None, check: Callable[[str, Any], Any] | None = None) -> Any:
    """A field of the schema: its default (or ``factory``), the ``--print-config`` note, and for a
    nested section the (possibly generated) class; ``check`` replaces the type check."""
    metadata = {"note": note, "section": section, "check": check}
    if section is not None:
        return field(default_factory=lambda: section()(), metadata=metadata)
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def paper_count_text(upper: bool = False) -> str:
    """``7200 for bcss-wsss, else 3600``: the paper's kept samples per strategy, for notes and help."""
    cases = ", ".join(f"{n} for {d.upper() if upper else d}" for d, n in PAPER_COUNT_BY_DATASET.items())
    return f"{cases}, else {PAPER_COUNT}"


def _paper_epochs_text() -> str:
    cases = ", ".join(f"{n} for {d.upper()} {s.capitalize()}" for (d, s), n in PAPER_EPOCHS_BY_RUN.items())
    return f"{PAPER_EPOCHS}, or {cases}"


def _borrowed(owner: type, names: dict[str, str | None]) -> list[tuple[str, Any, Any]]:
    """``make_dataclass`` fields that are ``owner``'s own (type and default), with the build's notes."""
    hints = typing.get_type_hints(owner)
    fields = {f.name: f for f in dataclasses.fields(owner)}
    return [(name, hints[name], setting(fields[name].default, note)) for name, note in names.items()]


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


STRATEGY_KEYS = ("size", "background_policy", "max_background", "allow_missing_classes")
"""The ``synthesis`` settings that are :class:`~hisyngen.synthesis.Strategy` fields."""


@functools.cache
def synthesis_section() -> type:
    """The ``synthesis`` section: the strategies' shared fields, plus per-strategy parameters."""
    from hisyngen.synthesis import Strategy

    notes = {"size": None, "background_policy": "ignore (white background -> 255) or tissue",
             "max_background": "redraw a tile or source with more white background than this",
             "allow_missing_classes": None}
    assert tuple(notes) == STRATEGY_KEYS
    params = setting(factory=dict, check=_checked_params,
                     note="per strategy, e.g. {bezier: {points: 12}} (hisyngen synth --list-strategies)")
    return dataclasses.make_dataclass("SynthesisSettings", [*_borrowed(Strategy, notes),
                                                            ("params", dict[str, dict[str, Any]], params)])


TRAIN_KEYS = ("batch_size", "lr", "image_size", "val_fraction", "num_workers", "min_steps_per_epoch", "match_classes")
"""The ``discriminator`` settings that are :class:`~hisyngen.filtering.train.TrainConfig` fields."""


@functools.cache
def discriminator_section() -> type:
    """The ``discriminator`` section: :class:`TrainConfig`'s fields the build sets, plus what the
    build decides itself (epochs by the paper when null, the training images)."""
    import inspect

    from hisyngen.filtering.train import TrainConfig, train_filter

    train_filter_default = {k: p.default for k, p in inspect.signature(train_filter).parameters.items()}

    borrowed = {name: (hint, spec) for name, hint, spec in _borrowed(TrainConfig, {
        "batch_size": None, "lr": None, "image_size": None, "val_fraction": None, "num_workers": None,
        "min_steps_per_epoch": "small sets: the batch is capped so an epoch has this many steps",
        "match_classes": "weight synthetic images to the real images' class presence (false: the paper)"})}
    assert tuple(borrowed) == TRAIN_KEYS
    own = {"epochs": (int | None, setting(None, f"null: {_paper_epochs_text()} (the paper)")),
           "negatives": (int, setting(train_filter_default["negatives"])),
           "real_from": (str, setting(train_filter_default["real_from"], "real images: multi (two or more tissues), all, or a folder"))}
    order = ("epochs", "batch_size", "lr", "negatives", "real_from", "image_size", "val_fraction", "num_workers",
             "min_steps_per_epoch", "match_classes")  # the order --print-config shows
    table = {**borrowed, **own}
    return dataclasses.make_dataclass("DiscriminatorSettings", [(name, *table[name]) for name in order])


@dataclass
class RealismSettings:
    enabled: bool = setting(True)
    max_images: int = setting(500)
    epochs: int = setting(3)
    image_size: int = setting(224)


@dataclass
class ExportSettings:
    formats: list[str] = setting(factory=lambda: ["mmseg", "hf"])
    license: str | None = setting(None)
    tags: list[str] = setting(factory=list)


@dataclass
class BuildConfig:
    """Every setting of ``hisyngen build`` (``--print-config`` prints them with their notes)."""

    dataset: str | None = setting(None, "force a built-in layout (wsss4luad, bcss-wsss, luad-histoseg); null: detect")
    spec: str | None = setting(None, "or a YAML/JSON dataset spec file")
    strategies: list[str] = setting(factory=lambda: ["mosaic", "bezier"], note="any of `hisyngen synth --list-strategies`")
    count: int | None = setting(None, f"kept samples per strategy; null: {paper_count_text()} (the paper)")
    seed: int = setting(0)
    filter: bool = setting(True, "train a discriminator per strategy and keep only samples it scores as real")
    workers: int | None = setting(None, "synthesis processes; null: all CPUs")
    device: str = setting("auto", "discriminator device: auto (CUDA when available), cpu, cuda, cuda:1")
    precision: str = setting("auto", "discriminator arithmetic: auto (bf16 where native: AMX/AVX-512-BF16 CPU, "
                                     "Ampere+ GPU), fp32, bf16, fp16")
    cache_dir: str | None = setting(None, "decoded single-tissue pool; null: OUT/cache")
    synthesis: Any = setting(section=synthesis_section)
    discriminator: Any = setting(section=discriminator_section)
    selection: str = setting(Selection.mode, "rank: keep the most realistic of oversample x count candidates; "
                                             "threshold: p_real > threshold until count (the paper, with stratify: false)")
    stratify: bool = setting(Selection.stratify, "per-stratum quotas (dominant class + classes present): the kept "
                                                 "class mix is the unfiltered one")
    oversample: float = setting(Selection.oversample, "rank: candidates scored per kept sample")
    match_area: bool = setting(Selection.match_area, "rank: the most realistic of each run of candidates with "
                                                     "neighbouring areas of the rarest class, so it does not shrink within a stratum")
    threshold: float = setting(Selection.threshold, "threshold: keep candidates with p_real above this")
    max_attempts: int | None = setting(None, f"threshold: candidates per strategy at most; null: {MAX_ATTEMPTS_DEFAULT}")
    filter_batch_size: int = setting(DEFAULT_BATCH)
    filter_workers: int = setting(1)
    realism: RealismSettings = setting(section=lambda: RealismSettings,
                                       note="offline realism report: a judge discriminator, Frechet distance, KID")
    export: ExportSettings = setting(section=lambda: ExportSettings)
    push_to_hub: str | None = setting(None, "user/name")
    private: bool = setting(False)
    revision: str | None = setting(None)


NOT_IDENTITY = ("workers", "device", "cache_dir", "push_to_hub", "private", "revision", "filter_workers", "max_attempts")
"""Settings that change how a build runs (or when it gives up) but not what it produces."""


@dataclass(frozen=True)
class _Setting:
    hint: Any
    default: Any
    note: str | None
    section: type | None
    check: Callable[[str, Any], Any] | None


@functools.cache
def _schema(section: type) -> dict[str, _Setting]:
    hints = typing.get_type_hints(section)
    out = {}
    for f in dataclasses.fields(section):
        default = f.default_factory() if f.default is MISSING else f.default
        nested = f.metadata.get("section")
        out[f.name] = _Setting(hints[f.name], default, f.metadata.get("note"), nested() if nested else None,
                               f.metadata.get("check"))
    return out


def defaults() -> dict[str, Any]:
    """The default configuration as the nested mapping a build runs with and stores."""
    return dataclasses.asdict(BuildConfig())


def notes() -> dict[str, str]:
    """What a setting means, by dotted name (``--print-config`` comments)."""
    out = {}

    def walk(section: type, prefix: str) -> None:
        for name, s in _schema(section).items():
            if s.note:
                out[prefix + name] = s.note
            if s.section is not None:
                walk(s.section, f"{prefix}{name}.")

    walk(BuildConfig, "")
    return out


def top_level_default(name: str) -> Any:
    """A top-level setting's default, read without generating the library-backed sections (CLI help)."""
    f = next(f for f in dataclasses.fields(BuildConfig) if f.name == name)
    return f.default_factory() if f.default is MISSING else f.default


def __getattr__(name: str) -> Any:  # DEFAULTS and NOTES on first use: generating them imports torch
    if name == "DEFAULTS":
        return defaults()
    if name == "NOTES":
        return notes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _kind(hint: Any) -> tuple[Any, bool]:
    """``(type, nullable)`` of a field's annotation (``int | None`` -> ``(int, True)``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return typing.get_origin(hint) or hint, False


def _checked(name: str, s: _Setting, value: Any) -> Any:
    """``value`` if its type suits the setting ``name``."""
    kind, nullable = _kind(s.hint)
    if value is None:
        if nullable:
            return None
        raise HisynError(f"{name}: needs a value (like {s.default!r}); only settings whose default is null may be null")
    if s.check is not None:
        return s.check(name, value)
    if kind is float and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:  # 1.5 for a seed or a size would fail deep inside a stage
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is list:  # strategies may also be given as "mosaic,bezier"
        ok = isinstance(value, list) or (name.endswith("strategies") and isinstance(value, str))
    elif kind is str:
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        expected = ("an integer (or null for the default)" if kind is int and nullable
                    else "an integer" if kind is int else f"a value like {s.default!r}")
        raise HisynError(f"{name}: {value!r} is not valid; expected {expected}")
    return copy.deepcopy(value)


def merge_config(base: dict[str, Any], override: dict[str, Any], where: str = "config",
                 section: type = BuildConfig) -> dict[str, Any]:
    """``base`` updated by ``override`` recursively; unknown keys and values of the wrong type
    (judged against :class:`BuildConfig`) are refused."""
    schema = _schema(section)
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if key not in schema:
            raise HisynError(f"{where}: unknown setting {key!r}; known: {', '.join(schema)}")
        nested = schema[key].section
        if nested is not None:
            if not isinstance(value, dict):
                raise HisynError(f"{where}: {key} must be a mapping")
            out[key] = merge_config(out[key], value, f"{where}.{key}", nested)
        else:
            out[key] = _checked(f"{where}.{key}", schema[key], value)
    return out


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The defaults, updated by the YAML file at ``path``, then by ``overrides`` (command-line options)."""
    import yaml

    config = defaults()
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
    """A build configuration (default: the defaults) as YAML with the notes as comments
    (``hisyngen build --print-config``)."""
    import yaml

    comments = notes()

    def emit(node: dict[str, Any], prefix: str, indent: str) -> list[str]:
        lines = []
        for key, value in node.items():
            note = comments.get(prefix + key)
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
    return "\n".join(lines + emit(defaults() if config is None else config, "", "")) + "\n"


def implied_by_older_build(previous: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Settings added after a stored build.yaml was written, with what that build did, so a rerun
    compares against them rather than against None: a filtered rank build selected without area
    matching; in a threshold or unfiltered build match_area decides nothing, so today's value."""
    rank = previous.get("filter", True) and previous.get("selection", Selection.mode) == "rank"
    return {"match_area": False if rank else settings.get("match_area")}


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide what a build produces (stored in ``OUT/build.yaml``, compared on a rerun)."""
    return {k: v for k, v in config.items() if k not in NOT_IDENTITY}

"""Name -> strategy class, and building a strategy from loosely typed parameters (CLI, YAML)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from hisyngen.errors import HisynError
from hisyngen.synthesis.base import Strategy

STRATEGIES: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Add a strategy class under its ``name``."""
    if not cls.name or cls.name in STRATEGIES:
        raise ValueError(f"strategy name {cls.name!r} is empty or taken")
    STRATEGIES[cls.name] = cls
    return cls


def strategy_names() -> list[str]:
    _load()
    return list(STRATEGIES)


def make_strategy(name: str, params: Mapping[str, Any] | None = None, classes: tuple[str, ...] | None = None) -> Strategy:
    """Build strategy ``name`` with ``params`` (lists become tuples; class names in ``pairs``
    resolve through ``classes``). Unknown names and parameters raise HisynError listing the valid ones."""
    _load()
    cls = STRATEGIES.get(name)
    if cls is None:
        raise HisynError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in (params or {}).items():
        key = key.replace("-", "_")
        if key not in fields:
            raise HisynError(f"{name} has no parameter {key!r}; its parameters: {', '.join(fields)}")
        kwargs[key] = _coerce(name, key, value, fields[key], classes)
    return cls(**kwargs)


def describe_strategies() -> str:
    """One paragraph per strategy: first docstring line and parameters with defaults."""
    _load()
    lines = []
    for name, cls in STRATEGIES.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        lines.append(f"{name}: {doc}")
        params = ", ".join(f"{f.name}={_default(f)!r}" for f in dataclasses.fields(cls))
        lines.append(f"    {params}")
    return "\n".join(lines)


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return None


def _coerce(strategy: str, key: str, value: Any, field: dataclasses.Field, classes: tuple[str, ...] | None) -> Any:
    default = _default(field)
    try:
        if key == "pairs":
            return _pairs(value, classes)
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if isinstance(default, int):
            number = float(value)
            if number != int(number):
                raise ValueError(value)
            return int(number)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            if default and len(items) != len(default):
                raise HisynError(f"{strategy}: parameter {key} needs {len(default)} comma-separated values "
                                 f"(like {','.join(map(str, default))}), got {value!r}")
            kind = type(default[0]) if default else float
            return tuple(kind(v) for v in items)
        return value
    except (TypeError, ValueError):
        raise HisynError(f"{strategy}: parameter {key}={value!r} is not a valid {type(default).__name__}") from None


def _pairs(value: Any, classes: tuple[str, ...] | None) -> tuple[tuple[int, int], ...] | None:
    """Ordered (foreground, background) class pairs from ``"a:b,c:d"`` or ``[[a, b], ...]``."""
    if value is None:
        return None
    items = [p.split(":") for p in value.split(",") if p.strip()] if isinstance(value, str) else value
    if not items:
        raise HisynError("pairs is empty: give foreground:background class pairs, e.g. TUM:STR,STR:TUM")
    pairs = []
    for item in items:
        if len(item) != 2:
            raise ValueError(item)
        pairs.append(tuple(_class_index(v, classes) for v in item))
    return tuple(pairs)  # type: ignore[return-value]


def _class_index(value: Any, classes: tuple[str, ...] | None) -> int:
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        return int(value)
    if classes is not None:
        lookup = {c.lower(): i for i, c in enumerate(classes)}
        if str(value).strip().lower() in lookup:
            return lookup[str(value).strip().lower()]
        raise HisynError(f"pairs: unknown class {value!r} (classes: {', '.join(classes)})")
    raise ValueError(value)


def _load() -> None:
    import hisyngen.synthesis  # noqa: F401  (registers the built-in strategies)

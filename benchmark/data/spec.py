"""`--dataset SPEC` → a Source. SPEC is `kind` or `kind:PATH` (e.g. `synthetic`, `videos:/data/clips`).

Sources register themselves with `@register_source("kind")`; their dataclass fields are their
settings, filled from CLI options (`--stride`, `--crop`, ...) that apply to them.
"""
from __future__ import annotations

import dataclasses
import importlib

from benchmark.data.source import Source
from benchmark.errors import UserError

_SOURCES: dict[str, type[Source]] = {}
# Modules that define the built-in sources; imported on first use so that parsing a spec stays cheap.
_BUILTIN_MODULES = [
    "benchmark.data.simulator.source",
    "benchmark.data.sources",
]


def register_source(kind: str, *, needs_path: bool = True):
    def deco(cls: type[Source]) -> type[Source]:
        cls.kind = kind
        cls.needs_path = needs_path
        _SOURCES[kind] = cls
        return cls

    return deco


def known_sources() -> dict[str, type[Source]]:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)
    return dict(_SOURCES)


def parse_dataset_spec(spec: str, **options) -> Source:
    """Build the Source for SPEC. `options` are settings; those the source does not have are ignored
    unless they were explicitly set (not None), which is an error naming the option."""
    sources = known_sources()
    kind, _, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in sources:
        raise UserError(f"unknown dataset spec {spec!r}: the kind must be one of "
                        f"{', '.join(sorted(sources))} (e.g. `synthetic` or `videos:/path/to/clips`)")
    cls = sources[kind]
    if cls.needs_path and not path:
        raise UserError(f"dataset spec {spec!r} needs a path: `{kind}:PATH`")
    if not cls.needs_path and path:
        raise UserError(f"dataset spec {spec!r}: `{kind}` takes no path")
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in options.items():
        if value is None:
            continue
        if key not in fields:
            raise UserError(f"option --{key.replace('_', '-')} does not apply to `{kind}` datasets")
        kwargs[key] = value
    if cls.needs_path:
        kwargs["path"] = path
    try:
        source = cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"dataset spec {spec!r}: {exc}") from exc
    source.spec = spec
    return source

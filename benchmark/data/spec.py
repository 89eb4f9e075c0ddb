"""`--dataset SPEC` → a Source. SPEC is `kind` or `kind:PATH` (e.g. `synthetic`, `videos:/data/clips`).

Sources register themselves with `@register_source("kind")`; their dataclass fields are their
settings, filled from CLI options (`--stride`, `--crop`, ...) that apply to them.

A PATH may start with `{downloads}`: the folder `sslbench data download` fills ($SSLBENCH_DATA_DIR, else
~/.cache/sslbench/data), so a preset names a public data set without naming a machine's folder
(`videos:{downloads}/pocus_videos`). The source keeps the spec as written (the track, its results and
their keys do not depend on where the data lies); a missing folder is an error naming it and the
download command.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

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


DOWNLOADS = "{downloads}"


def expand_downloads(spec: str, path: str) -> str:
    """`path` with a leading `{downloads}` replaced by the download folder; a folder it names that is not
    there is an error saying which folder, and how to fetch it or point elsewhere."""
    if not path.startswith(DOWNLOADS):
        return path
    from benchmark.data.download import DATA_DIR_ENV, default_root

    root = default_root()
    expanded = str(root) + path[len(DOWNLOADS):]
    if not Path(expanded).exists():
        name = Path(path[len(DOWNLOADS):].strip("/")).parts[:1]
        fetch = f"`sslbench data download {name[0]}`" if name else "`sslbench data download NAME`"
        raise UserError(f"dataset spec {spec!r}: {expanded} does not exist ({DOWNLOADS} is ${DATA_DIR_ENV}, else "
                        f"~/.cache/sslbench/data; here {root}). Fetch it with {fetch}, set ${DATA_DIR_ENV} to the "
                        f"folder that holds it, or give its folder yourself (--dataset / --downstream "
                        f"{spec.partition(':')[0]}:DIR)")
    return expanded


# Fields of every source that are not settings a user gives.
_NOT_SETTINGS = ("path", "spec", "roles")


def source_settings(kind: str) -> list[str]:
    """The settings a source of `kind` accepts (its dataclass fields, less the path)."""
    cls = known_sources()[kind]
    return [f.name for f in dataclasses.fields(cls) if f.name not in _NOT_SETTINGS]


def parse_dataset_spec(spec: str, *, flags: dict[str, str] | None = None, hint: str = "", **options) -> Source:
    """Build the Source for SPEC. `options` are settings; those the source does not have are ignored
    unless they were explicitly set (not None), which is an error naming the option as the user gave
    it (`flags`: setting → flag, default `--setting-name`), the source and the settings it accepts,
    followed by `hint` (e.g. where settings for another source go)."""
    sources = known_sources()
    kind, _, path = spec.partition(":")
    kind = kind.strip().lower()
    from benchmark.data.indomain import SPEC as IN_DOMAIN

    if spec.strip() == IN_DOMAIN:
        raise UserError(f"dataset spec {spec!r} is the downstream data's train split (the in-domain pretraining "
                        "pool): it is made from the downstream cache by the commands that have one (`sslbench bench`, "
                        "`run`, `ablation`, `evaluate` with --downstream or a preset), not a source of its own")
    if kind not in sources:
        raise UserError(f"unknown dataset spec {spec!r}: the kind must be one of "
                        f"{', '.join(sorted(sources))} (e.g. `synthetic` or `videos:/path/to/clips`)")
    cls = sources[kind]
    if cls.needs_path and not path:
        raise UserError(f"dataset spec {spec!r} needs a path: `{kind}:PATH`")
    if not cls.needs_path and path:
        raise UserError(f"dataset spec {spec!r}: `{kind}` takes no path")
    fields = {f.name for f in dataclasses.fields(cls)} - set(_NOT_SETTINGS)
    kwargs = {}
    for key, value in options.items():
        if value is None:
            continue
        if key not in fields:
            flag = (flags or {}).get(key) or f"--{key.replace('_', '-')}"
            raise UserError(f"{flag} does not apply to `{kind}` datasets ({spec}); `{kind}` accepts: "
                            f"{', '.join(source_settings(kind))}{hint}")
        kwargs[key] = value
    if cls.needs_path:
        kwargs["path"] = expand_downloads(spec, path)
    try:
        source = cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"dataset spec {spec!r}: {exc}") from exc
    source.spec = spec
    return source

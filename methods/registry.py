"""Method registry: built-ins register with `@register_method("name")`; other packages add methods
through the entry-point group `sslbench.methods` (name = module:Class)."""
from __future__ import annotations

import importlib
from importlib import metadata

from benchmark.errors import UserError
from methods.base import AUGMENTATIONS, FAMILIES, REQUIRED_DEFAULTS, VIEWS, SSLMethod

ENTRY_POINT_GROUP = "sslbench.methods"

_REGISTERED: dict[str, type[SSLMethod]] = {}


def register_method(name: str):
    """Class decorator: registers an SSLMethod subclass under `name` and sets `cls.name`."""

    def decorate(cls: type[SSLMethod]) -> type[SSLMethod]:
        cls.name = name
        _validate(cls, f"class {cls.__module__}.{cls.__qualname__}")
        other = _REGISTERED.get(name)
        if other is not None and other is not cls:
            raise UserError(f"method name {name!r} registered twice: by {other.__module__}.{other.__qualname__} "
                            f"and {cls.__module__}.{cls.__qualname__}")
        _REGISTERED[name] = cls
        return cls

    return decorate


def _validate(cls: type, origin: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, SSLMethod)):
        raise UserError(f"{origin} is not a subclass of methods.base.SSLMethod")
    name = cls.name
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise UserError(f"{origin}: method name {name!r} must be lower-case letters, digits and '_'")
    if getattr(cls, "family", None) not in FAMILIES:
        raise UserError(f"{origin}: family must be one of {', '.join(FAMILIES)}, got {getattr(cls, 'family', None)!r}")
    if cls.views not in VIEWS:
        raise UserError(f"{origin}: views must be one of {', '.join(VIEWS)}, got {cls.views!r}")
    if cls.augmentations not in AUGMENTATIONS:
        raise UserError(f"{origin}: augmentations must be one of {', '.join(AUGMENTATIONS)}, got {cls.augmentations!r}")
    missing = [k for k in REQUIRED_DEFAULTS if k not in cls.defaults]
    if missing:
        raise UserError(f"{origin}: defaults lack {', '.join(missing)}")


def _builtins() -> dict[str, type[SSLMethod]]:
    importlib.import_module("methods")  # the package imports every built-in method module
    return dict(_REGISTERED)


def _plugins(known: dict[str, type[SSLMethod]]) -> dict[str, type[SSLMethod]]:
    found: dict[str, type[SSLMethod]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep.dist, "name", None) or "an installed package"
        origin = f"entry point {ep.name!r} ({ep.value}) of {dist}"
        try:
            cls = ep.load()
        except Exception as exc:
            raise UserError(f"SSL method plug-in {origin} failed to load: {type(exc).__name__}: {exc}. "
                            f"Fix or uninstall {dist}") from exc
        if isinstance(cls, type) and issubclass(cls, SSLMethod) and not cls.name:
            cls.name = ep.name
        _validate(cls, origin)
        if cls.name != ep.name:
            raise UserError(f"{origin}: the class calls itself {cls.name!r}; the entry point must have the same name")
        if ep.name in known and known[ep.name] is not cls or ep.name in found and found[ep.name] is not cls:
            raise UserError(f"{origin}: the name {ep.name!r} is already taken by another method")
        found[ep.name] = cls
    return found


def available_methods() -> dict[str, type[SSLMethod]]:
    """Every method by name: built-ins first, then entry-point plug-ins (scanned on each call)."""
    methods = _builtins()
    methods.update(_plugins(methods))
    return methods


def get_method(name: str) -> type[SSLMethod]:
    """The method class called `name`; an unknown name is a UserError listing the known ones."""
    builtins = _builtins()
    if name in builtins:  # built-ins never depend on plug-ins loading
        return builtins[name]
    methods = available_methods()
    if name not in methods:
        raise UserError(f"unknown SSL method {name!r}; known methods: {', '.join(sorted(methods))}")
    return methods[name]

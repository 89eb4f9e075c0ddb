"""`sslbench methods [NAME]`: the registered SSL methods with family, views and defaults."""
from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("methods", help="list the SSL methods (built-in and plug-in) with their defaults",
                       description="List every registered SSL method with its family, the views it needs "
                                   "and its default hyper-parameters; with NAME, show each default with "
                                   "the reason for its value.")
    p.add_argument("name", nargs="?", default=None, help="show one method's defaults with their notes")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    p.set_defaults(func=_run)


def _format(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from methods.registry import available_methods, get_method

    if args.name is not None:
        cls = get_method(args.name)
        if args.json:
            print(json.dumps({"name": cls.name, "family": cls.family, "views": cls.views,
                              "augmentations": cls.augmentations, "defaults": cls.defaults, "notes": cls.notes},
                             indent=2))
            return 0
        print(f"{cls.name}: {cls.family}, views {cls.views}, {cls.augmentations} augmentations  "
              f"({cls.__module__}.{cls.__qualname__})")
        rows = [(k, _format(v), cls.notes.get(k, "")) for k, v in cls.defaults.items()]
        print(tabulate(rows, headers=["hyper-parameter", "default", "why"], tablefmt="github"))
        return 0

    methods = available_methods()
    if args.json:
        print(json.dumps({n: {"family": c.family, "views": c.views, "augmentations": c.augmentations,
                              "defaults": c.defaults}
                          for n, c in methods.items()}, indent=2))
        return 0
    rows = [(name, cls.family, cls.views,
             ", ".join(f"{k}={_format(v)}" for k, v in cls.defaults.items()))
            for name, cls in methods.items()]
    print(tabulate(rows, headers=["method", "family", "views", "defaults"], tablefmt="simple",
                   maxcolwidths=[None, None, None, 80]))
    return 0

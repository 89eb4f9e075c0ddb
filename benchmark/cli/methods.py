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
    p.add_argument("--preset", default=None,
                   help="with NAME: also show the continued recipe this preset's [pretrain.continued] table sets")
    p.set_defaults(func=_run)


def _format(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def continued_text(name: str, recipe: dict, preset: str | None) -> str:
    """How a run of `name` continued from ImageNet weights differs from its run from random weights: its
    source, its recipe's knobs and where the recipe is defined."""
    from tabulate import tabulate

    from benchmark.backbones import BACKBONES, imagenet_weights_source
    from leaderboard.results import continued_name, init_title
    from methods.base import CONTINUATION_NOTES, CONTINUATION_OPTIONS

    row = continued_name(name, "imagenet")
    sources = "; ".join(f"{b}: {imagenet_weights_source(b)}" for b in BACKBONES)
    where = f"preset {preset}" if preset else "a preset"
    lines = [
        "",
        f"Continued from ImageNet weights (`sslbench bench --method {name} --start imagenet`, or a preset's "
        f"[pretrain] start = \"imagenet\"): a row of its own, `{init_title(row)}` (results in <track>/{row}/, "
        "its start in its checkpoint and job keys).",
        f"- Source: the encoder starts from the track backbone's ImageNet weights ({sources}); the heads start "
        "from random weights, as from random.",
        "- Recipe: the defaults above, changed by these knobs (methods/base.py, CONTINUATION_OPTIONS), which "
        f"{where}'s [pretrain.continued] table sets for every continued run of its track (never for runs from "
        "random weights) and `sslbench pretrain --start imagenet --set KEY=VALUE` tries; a knob enters the "
        "checkpoint key only when given.",
        "",
    ]
    header = ["knob", "default (the method's recipe unchanged)"] + ([f"preset {preset}"] if preset else []) + ["why"]
    rows = [[k, _format(v)] + ([_format(recipe.get(k, v))] if preset else []) + [CONTINUATION_NOTES[k]]
            for k, v in CONTINUATION_OPTIONS.items()]
    lines.append(tabulate(rows, headers=header, tablefmt="github"))
    if preset and not recipe:
        lines.append(f"\nPreset {preset} sets no continued recipe: its continued runs use the method's recipe unchanged.")
    if not preset:
        lines.append("\nThe recipe for continued runs is not chosen yet: no built-in preset sets one "
                     "(`--preset P` shows a preset's).")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from methods.registry import available_methods, get_method

    if args.name is not None:
        from methods.base import CONTINUATION_OPTIONS

        cls = get_method(args.name)
        recipe = {}
        if args.preset:
            from protocols.presets import continued_recipe, load_preset, resolve_preset

            recipe = continued_recipe(load_preset(resolve_preset(args.preset)))
        if args.json:
            print(json.dumps({"name": cls.name, "family": cls.family, "views": cls.views,
                              "augmentations": cls.augmentations, "defaults": cls.defaults, "notes": cls.notes,
                              "continued": {"start": "imagenet", "recipe_defaults": CONTINUATION_OPTIONS,
                                            **({"preset": args.preset, "recipe": recipe} if args.preset else {})}},
                             indent=2))
            return 0
        print(f"{cls.name}: {cls.family}, views {cls.views}, {cls.augmentations} augmentations  "
              f"({cls.__module__}.{cls.__qualname__})")
        rows = [(k, _format(v), cls.notes.get(k, "")) for k, v in cls.defaults.items()]
        print(tabulate(rows, headers=["hyper-parameter", "default", "why"], tablefmt="github"))
        print(continued_text(cls.name, recipe, args.preset))
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

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
                   help="with NAME: also show the hyper-parameters this preset sets for the method and the continued "
                        "recipe its [pretrain.continued] table sets; "
                        "with --one-batch: whose pool, resolution and layout (default: smoke)")
    check = p.add_argument_group("one-batch check (with NAME)")
    check.add_argument("--one-batch", action="store_true",
                       help="can NAME's recipe lower its loss on one fixed batch of the preset's pool? "
                            "(the first check when a method does not learn; benchmark/pretrain/one_batch.py)")
    check.add_argument("--steps", type=int, default=None, help="optimiser steps (default: 60)")
    check.add_argument("--batch-size", type=int, default=None, help="frames in the batch (default: 64)")
    check.add_argument("--set", dest="hparams", action="append", default=[], metavar="KEY=VALUE",
                       help="override a hyper-parameter, as `sslbench pretrain --set`")
    check.add_argument("--adam", type=float, default=None, metavar="LR",
                       help="also fit with plain Adam at LR, to tell the loss from the optimiser apart")
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
        f"{where}'s [pretrain.method_continued.{name}] table sets for this method's continued runs, else its "
        "[pretrain.continued] table (never for runs from random weights), and `sslbench pretrain --start "
        "imagenet --set KEY=VALUE` tries; a knob enters the checkpoint key only when given.",
        "",
    ]
    header = ["knob", "default (the method's recipe unchanged)"] + ([f"preset {preset}"] if preset else []) + ["why"]
    rows = [[k, _format(v)] + ([_format(recipe.get(k, v))] if preset else []) + [CONTINUATION_NOTES[k]]
            for k, v in CONTINUATION_OPTIONS.items()]
    lines.append(tabulate(rows, headers=header, tablefmt="github"))
    if preset and not recipe:
        lines.append(f"\nPreset {preset} sets no continued recipe: its continued runs use the method's recipe unchanged.")
    elif preset:
        lines.append(f"\nPreset {preset} sets the column above for {name} (the preset file's comment above its "
                     "[pretrain.continued] table says how it was chosen and with which evidence).")
    if not preset:
        lines.append("\n`--preset P` shows the recipe a preset sets.")
    lines.append(f"\nChoosing one: `sslbench ablation continued-recipe --preset {preset or 'P'}` continues every method with "
                 "each candidate of protocols/continued_recipe.toml and evaluates it; the leaderboard's section "
                 "\"Continued pretraining: the recipe, chosen on validation\" picks, for each method, the candidate "
                 "with its best validation macro-F1 (never the test split); every method is given the same candidates.")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from methods.registry import available_methods, get_method

    if args.one_batch:
        return _one_batch(args)
    if args.name is not None:
        from methods.base import CONTINUATION_OPTIONS

        cls = get_method(args.name)
        recipe, own = {}, {}
        if args.preset:
            from leaderboard.results import RANDOM_START
            from protocols.presets import continued_recipe, load_preset, pretrain_settings, resolve_preset

            preset = load_preset(resolve_preset(args.preset))
            recipe = continued_recipe(preset, cls.name)
            settings = pretrain_settings(preset, cls.name, RANDOM_START)
            own = {**({"batch_size": settings["batch_size"]} if settings.get("batch_size") else {}),
                   **settings.get("hparams", {})}
        if args.json:
            print(json.dumps({"name": cls.name, "family": cls.family, "views": cls.views,
                              "augmentations": cls.augmentations, "defaults": cls.defaults, "notes": cls.notes,
                              "continued": {"start": "imagenet", "recipe_defaults": CONTINUATION_OPTIONS,
                                            **({"preset": args.preset, "recipe": recipe} if args.preset else {})},
                              **({"preset_hparams": own} if args.preset else {})},
                             indent=2))
            return 0
        print(f"{cls.name}: {cls.family}, views {cls.views}, {cls.augmentations} augmentations  "
              f"({cls.__module__}.{cls.__qualname__})")
        rows = [(k, _format(v), *([_format(own.get(k, v))] if args.preset else []), cls.notes.get(k, ""))
                for k, v in cls.defaults.items()]
        print(tabulate(rows, headers=["hyper-parameter", "default", *([f"preset {args.preset}"] if args.preset else []),
                                      "why"], tablefmt="github"))
        if args.preset:
            print(f"\nPreset {args.preset} " + (f"sets {', '.join(f'{k}={_format(v)}' for k, v in own.items())} for "
                                                 f"its {cls.name} runs (the preset file's comments say why)." if own else
                                                 f"runs {cls.name} with its defaults."))
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


def _one_batch(args: argparse.Namespace) -> int:
    from benchmark.cli.pretrain import _key_values
    from benchmark.errors import UserError
    from benchmark.pretrain.one_batch import BATCH, STEPS, fit_one_batch, pool_batch
    from benchmark.pretrain.sampler import pretraining_positions
    from benchmark.track import track_context
    from methods.registry import get_method
    from protocols.presets import pretrain_settings

    if args.name is None:
        raise UserError("--one-batch needs a method: sslbench methods NAME --one-batch")
    get_method(args.name)  # an unknown name fails here, before the pool is built
    preset = args.preset or "smoke"
    ctx = track_context(preset, new_results=False)
    pool = ctx.pretrain_cache()
    frames = pool_batch(pool.frames, pretraining_positions(pool), args.batch_size or BATCH)
    common = {"steps": args.steps or STEPS, "backbone": ctx.preset["backbone"],
              "memory_format": ctx.preset["cpu_memory_format"]}
    hparams = {**pretrain_settings(ctx.preset, args.name).get("hparams", {}), **_key_values(args.hparams, "--set")}
    print(f"{args.name} on one fixed batch of {len(frames)} frames of the {preset} pool at "
          f"{ctx.preset['resolution']} px, {common['steps']} steps, hyper-parameters as pretraining uses them"
          + (f" with {hparams}" if hparams else ""))
    fits = [fit_one_batch(args.name, frames, ctx.preset["resolution"], hparams=hparams, **common)]
    if args.adam is not None:
        fits.append(fit_one_batch(args.name, frames, ctx.preset["resolution"], hparams=hparams,
                                  adam_lr=args.adam, **common))
    for fit in fits:
        print(fit.line())
    return 0

"""Presets: one TOML file per track size (`smoke`, `standard`, `paper`).

A preset sets the datasets (pretraining and downstream spec + source settings), the backbone, the
resolution, the networks' memory layout on a CPU (`cpu_memory_format`, benchmark.device), the
`[pretrain]` table (PretrainConfig fields; `start` for its `init`: where the track's SSL runs start, random
weights unless it says `imagenet`; `[pretrain.continued]`: the recipe of runs continued from ImageNet
weights) and per-protocol overrides. An optional
`[data.<ablation>]` table holds settings of the downstream source that only that ablation's runs add
(`[data.cross_scanner] options = { scanners = 3 }`: the simulator's images spread over 3 machines). It is data,
not code; `load_preset` validates it. A path to a `.toml` file works wherever a name does (tests
use a tiny one).
"""
from __future__ import annotations

import copy
import difflib
import sys
import tomllib
from pathlib import Path

from benchmark.backbones import BACKBONES
from benchmark.data.source import ROLES
from benchmark.device import CPU_MEMORY_FORMATS, DEFAULT_CPU_MEMORY_FORMAT
from benchmark.errors import UserError
from protocols.spec import ABLATIONS, PROTOCOLS, load_protocol

PRESET_DIR = Path(__file__).resolve().parent
PRESETS = ("smoke", "cpu", "cpu-v3", "real", "standard", "paper", "calibrate")
# PretrainConfig fields a preset may set (benchmark/pretrain/config.py); `method` comes from the command.
# `start` is PretrainConfig's `init` (where pretraining starts), named as the command line names it.
PRETRAIN_FIELDS = ("backbone", "start", "resolution", "steps", "batch_size", "positives", "hparams",
                   "augment", "precision", "compile", "devices", "num_nodes", "limit_frames")
START = "start"
# `[pretrain.continued]`: the recipe of the track's continued runs (a start other than random): knobs of
# methods.base.CONTINUATION_OPTIONS over the method's recipe. Applied to continued runs only, so a
# from-random run of the same preset is unchanged by it.
CONTINUED = "continued"
# `[pretrain.method_continued.<method>]`: one method's continued recipe in place of `[pretrain.continued]`
# (the whole recipe, not merged with it, so that it is exactly a candidate of the continued-recipe ablation).
METHOD_CONTINUED = "method_continued"
# `[pretrain.method_hparams.<method>]`: hyper-parameters of one method on this track (e.g. a learning
# rate for a short budget), over the method's defaults and the track's `hparams`.
METHOD_HPARAMS = "method_hparams"
# Ablations that may add settings of the downstream source in their own `[data.<name>]` table.
DATA_ABLATIONS = ("cross_scanner",)
TOP_KEYS = ("name", "description", "backbone", "resolution", "cpu_memory_format", "data", "pretrain", "protocols")


def preset_path(name: str) -> Path:
    if name.endswith(".toml") or "/" in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise UserError(f"preset file {path} does not exist")
        return path
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}, auto, "
                        "or give the path of a preset .toml file")
    return PRESET_DIR / f"{name}.toml"


def load_preset(name: str) -> dict:
    """The validated content of preset `name` (or a .toml path). The returned `pretrain` table also
    holds `backbone` and `resolution`, so it maps one-to-one onto PretrainConfig fields."""
    path = preset_path(name)
    try:
        preset = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from exc
    _validate(preset, path)
    preset = copy.deepcopy(preset)
    preset["path"] = str(path)
    preset.setdefault("cpu_memory_format", DEFAULT_CPU_MEMORY_FORMAT)
    pretrain = preset.setdefault("pretrain", {})
    pretrain.setdefault("backbone", preset["backbone"])
    pretrain.setdefault("resolution", preset["resolution"])
    pretrain["cpu_memory_format"] = preset["cpu_memory_format"]
    preset.setdefault("protocols", {})
    return preset


def resolve_preset(name: str) -> str:
    """`auto` → `standard` when a GPU is present, else `smoke` (saying which); other names unchanged."""
    if name != "auto":
        return name
    import torch

    chosen = "standard" if torch.cuda.is_available() else "smoke"
    why = "a GPU is available" if chosen == "standard" else "no GPU found"
    print(f"preset auto → {chosen} ({why}; choose with --preset smoke|cpu|standard|paper)", file=sys.stderr)
    return chosen


def preset_start(preset: dict, start: str | None = None) -> str:
    """Where the track's SSL runs start: `start` when given (`--start`), else the preset's `[pretrain]
    start`, else random weights."""
    from leaderboard.results import RANDOM_START, STARTS

    chosen = start or preset["pretrain"].get(START, RANDOM_START)
    if chosen not in STARTS:
        raise UserError(f"--start {chosen!r}: pretraining starts from one of {', '.join(STARTS)}")
    return chosen


def pretrain_settings(preset: dict, method: str, start: str | None = None, recipe: dict | None = None) -> dict:
    """The PretrainConfig fields of `method` on this preset's track: its `[pretrain]` table with the
    method's own `[pretrain.method_hparams.<method>]` merged into `hparams`. `start` (`--start`, else the
    preset's `start`): a start other than random sets the config's `init` and merges the continued
    recipe (the method's `[pretrain.method_continued.<method>]`, else `[pretrain.continued]`; or `recipe` in
    their place: a candidate of the continued-recipe ablation)
    into `hparams`, over the rest; from random weights neither appears, so the settings (and keys) of
    from-random runs are what they were."""
    from leaderboard.results import RANDOM_START

    chosen = preset_start(preset, start)
    settings = {k: v for k, v in preset["pretrain"].items()
                if k not in (METHOD_HPARAMS, START, CONTINUED, METHOD_CONTINUED)}
    own = preset["pretrain"].get(METHOD_HPARAMS, {}).get(method)
    if own:
        settings["hparams"] = {**settings.get("hparams", {}), **own}
    if chosen != RANDOM_START:
        settings["init"] = chosen
        if recipe is None:
            recipe = continued_recipe(preset, method)
        if recipe:
            settings["hparams"] = {**settings.get("hparams", {}), **recipe}
    return settings


def continued_recipe(preset: dict, method: str | None = None) -> dict:
    """The knobs a preset gives the continued runs of `method`: its `[pretrain.method_continued.<method>]`,
    else `[pretrain.continued]` ({}: the method's recipe unchanged). Without `method`, the common table."""
    own = preset["pretrain"].get(METHOD_CONTINUED, {})
    return dict(own[method] if method in own else preset["pretrain"].get(CONTINUED, {}))


def _validate_method_hparams(table, where: str) -> None:
    from methods.base import resolve_hparams
    from methods.registry import available_methods

    if not isinstance(table, dict):
        raise UserError(f"{where}: key 'pretrain.{METHOD_HPARAMS}' must be a table of tables, one per method")
    known = available_methods()
    for method, hparams in table.items():
        if method not in known:
            raise _unknown(method, sorted(known), f"{where} [pretrain.{METHOD_HPARAMS}]")
        if not isinstance(hparams, dict):
            raise UserError(f"{where}: key 'pretrain.{METHOD_HPARAMS}.{method}' must be a table of "
                            "hyper-parameters, e.g. { lr = 4.0 }")
        try:
            resolve_hparams(known[method], hparams)
        except UserError as exc:
            raise UserError(f"{where} [pretrain.{METHOD_HPARAMS}.{method}]: {exc}") from exc


def _validate_continued(pretrain: dict, where: str) -> None:
    from leaderboard.results import STARTS
    from methods.base import CONTINUATION_OPTIONS, check_continuation
    from methods.registry import available_methods

    if START in pretrain and pretrain[START] not in STARTS:
        raise UserError(f"{where}: key 'pretrain.start' must be one of {', '.join(STARTS)}, got {pretrain[START]!r}")
    per_method = pretrain.get(METHOD_CONTINUED, {})
    if not isinstance(per_method, dict) or not all(isinstance(t, dict) for t in per_method.values()):
        raise UserError(f"{where}: key 'pretrain.{METHOD_CONTINUED}' must be a table of tables, one per method, "
                        "e.g. simclr = { encoder_lr_scale = 0.1 }")
    known = available_methods()
    for method in per_method:
        if method not in known:
            raise _unknown(method, sorted(known), f"{where} [pretrain.{METHOD_CONTINUED}]")
    tables = [(f"pretrain.{CONTINUED}", pretrain.get(CONTINUED, {}))]
    tables += [(f"pretrain.{METHOD_CONTINUED}.{m}", t) for m, t in per_method.items()]
    for name, table in tables:
        if not isinstance(table, dict):
            raise UserError(f"{where}: key '{name}' must be a table of the continued recipe's knobs, "
                            "e.g. { encoder_lr_scale = 0.1 }")
        for key in table:
            if key not in CONTINUATION_OPTIONS:
                raise UserError(f"{where} [{name}]: unknown knob {key!r}: a continued recipe takes "
                                f"{', '.join(CONTINUATION_OPTIONS)}; a method's own hyper-parameters go in "
                                f"[pretrain.{METHOD_HPARAMS}.<method>]")
        try:  # types and ranges
            check_continuation(table)
        except UserError as exc:
            raise UserError(f"{where} [{name}]: {exc}") from exc


def _unknown(key: str, known, where: str) -> UserError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    return UserError(f"{where}: unknown key {key!r}{hint}")


def _validate(p: dict, path: Path) -> None:
    where = str(path)
    for key in p:
        if key not in TOP_KEYS:
            raise _unknown(key, TOP_KEYS, where)
    for key, typ in (("name", str), ("description", str), ("backbone", str), ("resolution", int),
                     ("data", dict)):
        if key not in p:
            raise UserError(f"{where}: missing key {key!r}")
        if not isinstance(p[key], typ) or isinstance(p[key], bool):
            raise UserError(f"{where}: key {key!r} must be {typ.__name__}, got {p[key]!r}")
    if p["backbone"] not in BACKBONES:
        raise UserError(f"{where}: key 'backbone' must be one of {', '.join(BACKBONES)}, got {p['backbone']!r}")
    if p["resolution"] < 16:
        raise UserError(f"{where}: key 'resolution' must be >= 16 px, got {p['resolution']}")
    if p.get("cpu_memory_format", DEFAULT_CPU_MEMORY_FORMAT) not in CPU_MEMORY_FORMATS:
        raise UserError(f"{where}: key 'cpu_memory_format' must be one of {', '.join(CPU_MEMORY_FORMATS)}, "
                        f"got {p['cpu_memory_format']!r}")
    for role in p["data"]:
        if role not in ROLES + DATA_ABLATIONS:
            raise _unknown(role, ROLES + DATA_ABLATIONS, f"{where} [data]")
    for name in DATA_ABLATIONS:
        table = p["data"].get(name, {})
        if not isinstance(table, dict) or set(table) - {"options"} or not isinstance(table.get("options", {}), dict):
            raise UserError(f"{where}: [data.{name}] takes one key, options = {{ ... }}: settings of the downstream "
                            f"source for the {name} runs")
    for role in ROLES:
        table = p["data"].get(role)
        if not isinstance(table, dict) or not isinstance(table.get("spec"), str):
            raise UserError(f"{where}: missing key 'data.{role}.spec' (a dataset spec such as \"synthetic\")")
        for key in table:
            if key not in ("spec", "options"):
                raise _unknown(key, ("spec", "options"), f"{where} [data.{role}]")
        if not isinstance(table.get("options", {}), dict):
            raise UserError(f"{where}: key 'data.{role}.options' must be a table")
    pretrain = p.get("pretrain", {})
    if not isinstance(pretrain, dict):
        raise UserError(f"{where}: key 'pretrain' must be a table")
    for key in pretrain:
        if key == "init":
            raise UserError(f"{where} [pretrain]: key 'init' is named 'start' in a preset: start = \"imagenet\" "
                            "pretrains every method of the track from ImageNet weights, as rows of their own "
                            "(<method>@imagenet), with the recipe of [pretrain.continued]")
        if key not in PRETRAIN_FIELDS + (METHOD_HPARAMS, CONTINUED, METHOD_CONTINUED):
            raise _unknown(key, PRETRAIN_FIELDS + (METHOD_HPARAMS, CONTINUED, METHOD_CONTINUED), f"{where} [pretrain]")
    _validate_method_hparams(pretrain.get(METHOD_HPARAMS, {}), where)
    _validate_continued(pretrain, where)
    protocols = p.get("protocols", {})
    for name, overrides in protocols.items():
        if name not in PROTOCOLS + ABLATIONS:
            raise _unknown(name, PROTOCOLS + ABLATIONS, f"{where} [protocols]")
        try:
            load_protocol(name, overrides)
        except UserError as exc:
            raise UserError(f"{where} [protocols.{name}]: {exc}") from exc

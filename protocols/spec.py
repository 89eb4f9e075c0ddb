"""Protocol specs: load a `protocols/<name>.toml`, validate it, and hash it canonically.

A protocol file is data; its hash (sha256 of the parsed content serialised as canonical JSON) goes
into every result, so results of a changed protocol never mix with old ones. A preset may override
settings for its track (e.g. fewer fine-tune epochs on a CPU); the overrides are validated against
the same schema and recorded beside the file's hash (they enter every job key).
No torch here: `sslbench leaderboard` and `sslbench validate` hash the protocol files with
`known_protocol_hashes` and pass the hashes to the leaderboard, which reads result files only.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import DataError, UserError
from leaderboard.results import job_overrides, scoped_hash_name

PROTOCOL_DIR = Path(__file__).resolve().parent
# Hashes of earlier protocol versions whose results stay valid (shown apart, never ranked with the
# current ones), relative to the protocols folder.
RETIRED_FILE = Path("retired") / "hashes.toml"
HASH = re.compile(r"^[0-9a-f]{64}$")
PROTOCOLS = ("linear_probe", "finetune", "knn")
# Ablations are protocols too (a file, a version, a hash) but not part of the main grid: each has its
# own command (`sslbench ablation ...`) and its own section of the leaderboard.
ABLATIONS = ("variance_vs_size", "cross_scanner", "learning_curve", "continued_recipe", "positives")
# The protocols the cross-scanner protocol can evaluate with: every main protocol (the probe and the
# k-NN score the features cached for the main grid; fine-tuning trains a copy of the encoder per job).
CROSS_SCANNER_EVALS = PROTOCOLS
# Ablations whose runs each record one evaluation protocol, and whose list of evaluation protocols only
# chooses which runs are made: a run records (and is keyed by) the hash of the file *scoped* to its own
# evaluation protocol (`scoped_content`), so adding a protocol to the list keeps every finished run's hash
# and key. Version 1 of cross_scanner.toml listed only the linear probe: its probe runs keep their hash.
SCOPED_ABLATIONS = {"cross_scanner": "eval_protocols"}

FLOAT_LIST = "list[float]"
INT_LIST = "list[int]"
STR_LIST = "list[str]"
TABLES = "a table of tables"  # name → table (continued_recipe's recipes)

_COMMON: dict[str, Any] = {"name": str, "version": int, "fractions": FLOAT_LIST, "seeds": INT_LIST,
                           "pretrain_seeds": INT_LIST}
# The few-labels rule of a main protocol (benchmark.data.splits.class_quota): every class of the train split
# keeps at least `min_per_class` images at every fraction. Optional: without the table the floor is 1, the
# rule of every version so far, so the files (and their hashes) stay as they were; a preset that sets it
# states its track's rule, and the setting enters its job keys.
_LABELS: dict[str, Any] = {"labels": {"min_per_class": int}}
OPTIONAL_KEYS = ("labels",)

# The schema of each protocol: key → type, or a nested table.
SCHEMAS: dict[str, dict[str, Any]] = {
    "linear_probe": {
        **_COMMON, **_LABELS,
        "features": {"batch_size": int, "standardize": bool},
        "probe": {"solver": str, "l2_grid": FLOAT_LIST, "max_iter": int, "tolerance": float,
                  "class_weighted": bool, "select_metric": str},
    },
    "finetune": {
        **_COMMON, **_LABELS,
        "head": {"init": str, "standardize": bool, "l2_grid": FLOAT_LIST, "max_iter": int, "tolerance": float},
        "train": {"epochs": int, "batch_size": int, "optimizer": str, "lr_grid": FLOAT_LIST, "weight_decay": float,
                  "warmup_epochs": int, "min_steps_per_epoch": int, "class_weighted": bool,
                  "bn_recalibrate": bool, "select_metric": str},
        "augment": {"hflip": float, "vflip": float, "rotate_deg": float, "translate": float,
                    "scale_min": float, "scale_max": float, "brightness": float, "contrast": float,
                    "gamma": float, "noise_std": float},
    },
    "knn": {
        **_COMMON, **_LABELS,
        "features": {"batch_size": int},
        "knn": {"k_grid": INT_LIST, "temperature_grid": FLOAT_LIST, "query_batch_size": int, "select_metric": str},
    },
    "variance_vs_size": {
        "name": str, "version": int, "methods": STR_LIST, "eval_protocols": STR_LIST, "fraction": float,
        "seeds": INT_LIST, "pretrain_seeds": INT_LIST, "pretrain_steps": int, "batch_size": int, "selection_seed": int,
        "diversity": {"subjects": INT_LIST, "frames": int},
        "size": {"subjects": int, "frames": INT_LIST},
    },
    "cross_scanner": {
        **_COMMON, "eval_protocols": STR_LIST, "min_scanners": int,
    },
    "learning_curve": {
        "name": str, "version": int, "methods": STR_LIST, "budgets": INT_LIST, "eval_protocols": STR_LIST,
        "fraction": float, "seeds": INT_LIST, "pretrain_seeds": INT_LIST,
    },
    "continued_recipe": {
        "name": str, "version": int, "methods": STR_LIST, "eval_protocols": STR_LIST, "fraction": float,
        "seeds": INT_LIST, "pretrain_seeds": INT_LIST, "recipes": TABLES,
    },
    "positives": {
        "name": str, "version": int, "methods": STR_LIST, "modes": STR_LIST, "reference": str,
        "eval_protocols": STR_LIST, "fractions": FLOAT_LIST, "seeds": INT_LIST, "pretrain_seeds": INT_LIST,
    },
}

SELECT_METRICS = ("macro_f1", "balanced_accuracy", "accuracy")
HEAD_INITS = ("linear_probe", "random")
FINETUNE_OPTIMIZERS = ("sgd", "adamw")
SOLVERS = ("lbfgs",)


def canonical_hash(obj: Any) -> str:
    """sha256 of `obj` as canonical JSON (sorted keys, no whitespace): independent of key order,
    comments and formatting of the TOML it was parsed from."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def protocol_hash(toml_path: Path) -> str:
    """The hash of a protocol file as the protocol runner records it: `canonical_hash` of the parsed
    TOML (no schema check: any file's hash can be compared with a result's)."""
    with open(toml_path, "rb") as fh:
        return canonical_hash(tomllib.load(fh))


def known_protocol_hashes(protocols_dir: Path | None = None) -> dict[str, str]:
    """name → hash of every `<name>.toml` in `protocols_dir` (default: this package's) as it is now."""
    protocols_dir = Path(protocols_dir) if protocols_dir is not None else PROTOCOL_DIR
    if not protocols_dir.is_dir():
        return {}
    out = {}
    for path in sorted(protocols_dir.glob("*.toml")):
        with open(path, "rb") as fh:
            content = tomllib.load(fh)
        out[path.stem] = canonical_hash(content)
        if path.stem in SCOPED_ABLATIONS:  # and the hash each of its runs records (`scoped_content`)
            for evaluated in content.get(SCOPED_ABLATIONS[path.stem]) or []:
                out[scoped_hash_name(path.stem, evaluated)] = canonical_hash(scoped_content(content, evaluated))
    return out


def scoped_content(content: dict, eval_protocol: str) -> dict:
    """A scoped ablation's file content as one of its runs sees it (`SCOPED_ABLATIONS`): its list of
    evaluation protocols narrowed to the run's own. Its canonical hash is the run's protocol hash."""
    return {**content, SCOPED_ABLATIONS[content["name"]]: [eval_protocol]}


def retired_protocol_hashes(protocols_dir: Path | None = None) -> dict[str, dict[str, int]]:
    """name → {hash: version} of the earlier protocol versions listed in `<protocols_dir>/retired/hashes.toml`."""
    path = (Path(protocols_dir) if protocols_dir is not None else PROTOCOL_DIR) / RETIRED_FILE
    if not path.is_file():
        return {}
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(path, f"not valid TOML ({exc})") from exc
    out: dict[str, dict[str, int]] = {}
    for name, entries in table.items():
        for i, entry in enumerate(entries if isinstance(entries, list) else [entries]):
            ok = isinstance(entry, dict) and isinstance(entry.get("version"), int) \
                and isinstance(entry.get("hash"), str) and HASH.match(entry["hash"])
            if not ok:
                raise DataError(path, f"[[{name}]] entry {i + 1} needs version = <int> and hash = <64 hex digits>")
            out.setdefault(name, {})[entry["hash"]] = entry["version"]
    return out


@dataclass(frozen=True)
class ProtocolSpec:
    name: str
    version: int
    hash: str  # of the protocol file's parsed content
    settings: dict  # the file's content with the overrides applied
    overrides: dict = field(default_factory=dict)
    path: Path | None = None
    content: dict = field(default_factory=dict, repr=False, compare=False)  # the file's, before overrides

    @property
    def fractions(self) -> list[float]:
        return list(self.settings["fractions"])

    @property
    def seeds(self) -> list[int]:
        return list(self.settings["seeds"])

    @property
    def pretrain_seeds(self) -> list[int]:
        return list(self.settings["pretrain_seeds"])

    @property
    def key(self) -> dict:
        """What identifies the protocol as a job runs it: the file's hash plus the preset's overrides
        of how a job runs (not of which jobs run: `leaderboard.results.REPLICATE_KEYS`)."""
        return protocol_key(self.name, self.hash, self.overrides)

    def record(self) -> dict:
        return {"name": self.name, "version": self.version, "hash": self.hash}

    def scoped(self, eval_protocol: str) -> ProtocolSpec:
        """This scoped ablation (`SCOPED_ABLATIONS`) as its runs evaluated by `eval_protocol` record it: the
        hash of the file with its list of evaluation protocols narrowed to that one."""
        if self.name not in SCOPED_ABLATIONS:
            raise AssertionError(f"protocol {self.name!r} is not scoped by evaluation protocol")
        listed = SCOPED_ABLATIONS[self.name]
        return dataclasses.replace(self, hash=canonical_hash(scoped_content(self.content, eval_protocol)),
                                   settings={**self.settings, listed: [eval_protocol]})


def protocol_key(name: str, file_hash: str, overrides: dict, *, legacy: bool = False) -> dict:
    """The protocol's part of a job key. `legacy`: as keys had it before the replicate lists left them
    (protocols.keys.rekey_results)."""
    return {"name": name, "hash": file_hash, "overrides": overrides if legacy else job_overrides(overrides)}


def protocol_path(name: str) -> Path:
    if name not in PROTOCOLS + ABLATIONS:
        raise UserError(f"unknown protocol {name!r}: choose one of {', '.join(PROTOCOLS + ABLATIONS)}")
    return PROTOCOL_DIR / f"{name}.toml"


def load_protocol(name: str, overrides: dict | None = None) -> ProtocolSpec:
    """Load, validate and hash protocol `name`; `overrides` (a partial table, from a preset) are
    validated against the same schema and merged on top."""
    path = protocol_path(name)
    content = read_protocol_file(path)
    if content["name"] != name:
        raise UserError(f"{path}: key 'name' is {content['name']!r} but the file is for {name!r}")
    overrides = copy.deepcopy(overrides or {})
    if overrides:
        _check_table(overrides, SCHEMAS[name], f"overrides of protocol {name!r}", "", partial=True)
        for key in ("name", "version"):
            if key in overrides:
                raise UserError(f"overrides of protocol {name!r}: key {key!r} cannot be overridden")
    settings = _merge(content, overrides)
    _check_values(settings, f"{path} (with overrides {overrides})" if overrides else str(path))
    return ProtocolSpec(name=name, version=content["version"], hash=canonical_hash(content),
                        settings=settings, overrides=overrides, path=path, content=content)


def read_protocol_file(path: Path) -> dict:
    """Parse and validate one protocol file (the schema is chosen by its `name`)."""
    try:
        content = tomllib.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise UserError(f"protocol file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from exc
    name = content.get("name")
    if name not in SCHEMAS:
        raise UserError(f"{path}: key 'name' must be one of {', '.join(PROTOCOLS + ABLATIONS)}, got {name!r}")
    _check_table(content, SCHEMAS[name], str(path), "", partial=False)
    _check_values(content, str(path))
    return content


def _check_table(table: dict, schema: dict, where: str, prefix: str, partial: bool) -> None:
    for key, value in table.items():
        dotted = prefix + key
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else \
                f" (known keys: {', '.join(prefix + k for k in schema)})"
            raise UserError(f"{where}: unknown key {dotted!r}{hint}")
        expected = schema[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise UserError(f"{where}: key {dotted!r} must be a table, got {type(value).__name__}")
            _check_table(value, expected, where, dotted + ".", partial)
        elif not _has_type(value, expected):
            name = expected if isinstance(expected, str) else expected.__name__
            raise UserError(f"{where}: key {dotted!r} must be {name}, got {value!r} ({type(value).__name__})")
    if not partial:
        for key in schema:
            if key not in table and not (prefix == "" and key in OPTIONAL_KEYS):
                raise UserError(f"{where}: missing key {prefix + key!r}")


def _has_type(value: Any, expected: Any) -> bool:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def is_float(v):  # an integer literal is a fine float (`lr = 1` means 1.0)
        return is_int(v) or isinstance(v, float)

    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return is_int(value)
    if expected is float:
        return is_float(value)
    if expected is str:
        return isinstance(value, str)
    if expected == FLOAT_LIST:
        return isinstance(value, list) and len(value) > 0 and all(is_float(v) for v in value)
    if expected == INT_LIST:
        return isinstance(value, list) and len(value) > 0 and all(is_int(v) for v in value)
    if expected == STR_LIST:
        return isinstance(value, list) and len(value) > 0 and all(isinstance(v, str) for v in value)
    if expected == TABLES:
        return isinstance(value, dict) and len(value) > 0 and all(isinstance(v, dict) for v in value.values())
    raise AssertionError(f"unknown schema type {expected!r}")


def _check_values(c: dict, where: str) -> None:
    """Ranges and choices that the types alone do not capture."""
    if c["version"] < 1:
        raise UserError(f"{where}: key 'version' must be >= 1")
    if c["name"] == "cross_scanner":
        return _check_cross_scanner(c, where)
    if c["name"] == "learning_curve":
        return _check_learning_curve(c, where)
    if c["name"] == "continued_recipe":
        return _check_continued_recipe(c, where)
    if c["name"] == "positives":
        return _check_positives(c, where)
    if c["name"] in ABLATIONS:
        return _check_ablation(c, where)
    _check_common(c, where)
    table = {"linear_probe": "probe", "finetune": "train", "knn": "knn"}[c["name"]]
    if c[table]["select_metric"] not in SELECT_METRICS:
        raise UserError(f"{where}: key '{table}.select_metric' must be one of {', '.join(SELECT_METRICS)}")
    if c["name"] == "linear_probe":
        p = c["probe"]
        if p["solver"] not in SOLVERS:
            raise UserError(f"{where}: key 'probe.solver' must be one of {', '.join(SOLVERS)}")
        if any(v <= 0 for v in p["l2_grid"]) or p["max_iter"] < 1 or c["features"]["batch_size"] < 1:
            raise UserError(f"{where}: 'probe.l2_grid' must be > 0 (a unique, seed-free solution), 'probe.max_iter' and "
                            "'features.batch_size' >= 1")
    elif c["name"] == "knn":
        _check_knn(c, where)
    else:
        t, a = c["train"], c["augment"]
        for key in ("epochs", "batch_size", "min_steps_per_epoch"):
            if t[key] < 1:
                raise UserError(f"{where}: key 'train.{key}' must be >= 1")
        if min(t["lr_grid"]) <= 0 or t["weight_decay"] < 0 or t["warmup_epochs"] < 0:
            raise UserError(f"{where}: 'train.lr_grid' values must be > 0, 'train.weight_decay' and "
                            "'train.warmup_epochs' >= 0")
        if t["optimizer"] not in FINETUNE_OPTIMIZERS:
            raise UserError(f"{where}: key 'train.optimizer' must be one of {', '.join(FINETUNE_OPTIMIZERS)}, "
                            f"got {t['optimizer']!r}")
        h = c["head"]
        if h["init"] not in HEAD_INITS:
            raise UserError(f"{where}: key 'head.init' must be one of {', '.join(HEAD_INITS)}, got {h['init']!r}")
        if min(h["l2_grid"]) <= 0 or h["max_iter"] < 1:
            raise UserError(f"{where}: 'head.l2_grid' values must be > 0 and 'head.max_iter' >= 1")
        if not 0 < a["scale_min"] <= a["scale_max"] <= 1:
            raise UserError(f"{where}: need 0 < 'augment.scale_min' <= 'augment.scale_max' <= 1")
        for key in ("hflip", "vflip"):
            if not 0 <= a[key] <= 1:
                raise UserError(f"{where}: key 'augment.{key}' is a probability in [0, 1]")


def _check_knn(c: dict, where: str) -> None:
    n = c["knn"]
    for key in ("k_grid", "temperature_grid"):
        if len(set(n[key])) != len(n[key]):
            raise UserError(f"{where}: key 'knn.{key}' must not repeat values")
    if min(n["k_grid"]) < 1:
        raise UserError(f"{where}: key 'knn.k_grid' values must be >= 1 (neighbours), got {n['k_grid']}")
    if min(n["temperature_grid"]) <= 0:
        raise UserError(f"{where}: key 'knn.temperature_grid' values must be > 0, got {n['temperature_grid']}")
    if n["query_batch_size"] < 1 or c["features"]["batch_size"] < 1:
        raise UserError(f"{where}: 'knn.query_batch_size' and 'features.batch_size' must be >= 1")


def _check_common(c: dict, where: str) -> None:
    if "labels" in c and c["labels"].get("min_per_class", 1) < 1:
        raise UserError(f"{where}: key 'labels.min_per_class' must be >= 1 (every class keeps an example at every "
                        f"fraction), got {c['labels']['min_per_class']}")
    bad = [f for f in c["fractions"] if not 0 < f <= 1]
    if bad:
        raise UserError(f"{where}: key 'fractions' must lie in (0, 1], got {bad}")
    for key in ("fractions", "seeds", "pretrain_seeds"):
        if len(set(c[key])) != len(c[key]):
            raise UserError(f"{where}: key {key!r} must not repeat values")
    for key in ("seeds", "pretrain_seeds"):
        if any(s < 0 for s in c[key]):
            raise UserError(f"{where}: key {key!r} must be >= 0")


def _check_cross_scanner(c: dict, where: str) -> None:
    _check_common(c, where)
    bad = [p for p in c["eval_protocols"] if p not in CROSS_SCANNER_EVALS]
    if bad:
        raise UserError(f"{where}: key 'eval_protocols' may name {', '.join(CROSS_SCANNER_EVALS)}, got {bad}")
    if len(set(c["eval_protocols"])) != len(c["eval_protocols"]):
        raise UserError(f"{where}: key 'eval_protocols' must not repeat a protocol, got {c['eval_protocols']}")
    if c["min_scanners"] < 2:
        raise UserError(f"{where}: key 'min_scanners' must be >= 2 (one scanner to hold out, one to train on)")


def evaluation_specs(names: list[str], preset_overrides: dict, **settings) -> list[ProtocolSpec]:
    """Main protocols as an ablation runs them: the preset's overrides of each (e.g. fewer fine-tune
    epochs on the smoke track), then the ablation's `settings` (its fractions, seeds, pretraining seeds)."""
    return [load_protocol(name, {**(preset_overrides.get(name) or {}), **settings}) for name in names]


def _check_evaluation(c: dict, where: str) -> None:
    """What an ablation that evaluates its checkpoints by the main protocols needs: a label fraction (where it
    has one), distinct seeds, known protocols."""
    if "fraction" in c and not 0 < c["fraction"] <= 1:
        raise UserError(f"{where}: key 'fraction' must lie in (0, 1], got {c['fraction']}")
    for key in ("seeds", "pretrain_seeds"):
        if len(set(c[key])) != len(c[key]) or any(s < 0 for s in c[key]):
            raise UserError(f"{where}: key {key!r} must be distinct integers >= 0")
    bad = [p for p in c["eval_protocols"] if p not in PROTOCOLS]
    if bad:
        raise UserError(f"{where}: key 'eval_protocols' must name protocols among {', '.join(PROTOCOLS)}, got {bad}")


def _check_learning_curve(c: dict, where: str) -> None:
    _check_evaluation(c, where)
    budgets = c["budgets"]
    # A curve needs two points; the leaderboard reads "flattened or not" off its last two budgets.
    if len(budgets) < 2 or budgets != sorted(set(budgets)):
        raise UserError(f"{where}: key 'budgets' needs at least 2 distinct pretraining budgets (steps) in "
                        f"increasing order, e.g. [150, 300, 600, 1200]; got {budgets}")
    if budgets[0] < 1:
        raise UserError(f"{where}: key 'budgets' must be >= 1 (optimiser steps), got {budgets}")
    if len(set(c["methods"])) != len(c["methods"]):
        raise UserError(f"{where}: key 'methods' must not repeat a method, got {c['methods']}")
    if len(set(c["eval_protocols"])) != len(c["eval_protocols"]):
        raise UserError(f"{where}: key 'eval_protocols' must not repeat a protocol, got {c['eval_protocols']}")


RECIPE_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*")


def _check_continued_recipe(c: dict, where: str) -> None:
    """Each recipe has a name fit for a folder and only the continued recipe's knobs, with values of their
    types; no two recipes are the same."""
    from methods.base import CONTINUATION_OPTIONS, check_continuation

    _check_evaluation(c, where)
    seen: dict[str, str] = {}
    for name, knobs in c["recipes"].items():
        if not RECIPE_NAME.fullmatch(name):
            raise UserError(f"{where}: recipe name {name!r} must be lower-case letters, digits, '.' and '-' "
                            "(it names the folder of its runs)")
        try:
            check_continuation(knobs)
        except UserError as exc:
            raise UserError(f"{where} [recipes.{name}]: {exc}") from exc
        same = canonical_hash({**CONTINUATION_OPTIONS, **knobs})
        if same in seen:
            raise UserError(f"{where}: recipes {seen[same]!r} and {name!r} are the same recipe")
        seen[same] = name


def _check_positives(c: dict, where: str) -> None:
    """Each mode is a positives setting in its written form (it names its runs' folder and enters their keys),
    none twice; the reference is one of them and there is another to compare with it; the fractions are
    labels fractions."""
    from benchmark.pretrain.sampler import parse_positives

    _check_evaluation(c, where)
    for mode in c["modes"]:
        try:
            canonical = str(parse_positives(mode))
        except UserError as exc:
            raise UserError(f"{where}: key 'modes': {exc}") from exc
        if canonical != mode:
            raise UserError(f"{where}: key 'modes': write {mode!r} as {canonical!r}")
    if len(set(c["modes"])) != len(c["modes"]) or len(c["modes"]) < 2:
        raise UserError(f"{where}: key 'modes' needs at least 2 distinct positives settings, got {c['modes']}")
    if c["reference"] not in c["modes"]:
        raise UserError(f"{where}: key 'reference' must be one of the modes {c['modes']}, got {c['reference']!r}")
    if any(not 0 < f <= 1 for f in c["fractions"]) or len(set(c["fractions"])) != len(c["fractions"]):
        raise UserError(f"{where}: key 'fractions' must be distinct label fractions in (0, 1], got {c['fractions']}")
    if len(set(c["methods"])) != len(c["methods"]):
        raise UserError(f"{where}: key 'methods' must not repeat a method, got {c['methods']}")


def _check_ablation(c: dict, where: str) -> None:
    _check_evaluation(c, where)
    if c["pretrain_steps"] < 1 or c["batch_size"] < 2:
        raise UserError(f"{where}: 'pretrain_steps' must be >= 1 and 'batch_size' >= 2")
    div, size = c["diversity"], c["size"]
    levels = [(n, div["frames"]) for n in div["subjects"]] + [(size["subjects"], f) for f in size["frames"]]
    for axis, values in (("diversity.subjects", div["subjects"]), ("size.frames", size["frames"])):
        if len(set(values)) < 3 or values != sorted(values):
            raise UserError(f"{where}: key {axis!r} needs at least 3 distinct levels in increasing order, got {values}")
    for n_subj, n_frames in levels:
        if not 1 <= n_subj <= n_frames:
            raise UserError(f"{where}: every level needs 1 <= subjects <= frames, got {n_subj} subjects for "
                            f"{n_frames} frames")
        if n_frames < c["batch_size"]:
            raise UserError(f"{where}: a subset of {n_frames} frames is smaller than 'batch_size' "
                            f"{c['batch_size']}; lower the batch size or raise the frame budget")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out

"""Result files: one JSON per run, the one format every writer produces and every reader reads.

Where a result lives, the schema it must pass, how its record is assembled, written and read back,
and where the results folder is. The protocols write through this module and the leaderboard reads
through it; it imports neither torch nor the engine.

    <results>/<track>/<init>/<protocol>/<fraction>/pretrain-seed<p>/seed<k>.json

An SSL method continued from ImageNet weights (pretrained on the videos from the backbone's ImageNet
weights instead of random ones) is an init of its own, `<method>@imagenet` (`continued_name`), shown
as `<method> ← imagenet` (`init_title`): its results lie in their own folder beside the method's
from-random ones, and its name enters its job keys, while a from-random init keeps the method's name
(and so every key it had).

An ablation run adds its variant after the protocol: for the variance-vs-size ablation the subset
and the evaluation protocol, `<track>/<method>/variance_vs_size/<subset>/<eval protocol>/...`; for
the learning curve the pretraining budget and the evaluation protocol,
`<track>/<method>/learning_curve/steps-<N>/<eval protocol>/...`; for the cross-scanner protocol the
held-out scanner and the evaluation protocol, `<track>/<init>/cross_scanner/held-out-<scanner>/<eval protocol>/...`;
for the continued-recipe ablation the recipe and the evaluation protocol,
`<track>/<method>@imagenet/continued_recipe/recipe-<name>/<eval protocol>/...`; for the positives ablation the
way positive pairs were drawn and the evaluation protocol, `<track>/<method>/positives/positives-temporal-4/<eval
protocol>/...`.
"""
from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path

from leaderboard.atomic import atomic_write_text
from leaderboard.errors import ResultFileError, ResultsError

PACKAGE_DIR = Path(__file__).resolve().parent
SCHEMA_PATH = PACKAGE_DIR / "result.schema.json"
SCHEMA_VERSION = 2
# The protocol name of the variance-vs-size ablation, as its results record it and lie under.
VARIANCE_VS_SIZE = "variance_vs_size"
# The learning curve's protocol name, and the `ablation.axis` of its records (what it varies: the
# pretraining budget in optimiser steps).
LEARNING_CURVE = "learning_curve"
STEPS_AXIS = "steps"
# The continued-recipe ablation's protocol name, and the `ablation.axis` of its records (what it varies: the
# recipe a run continued from ImageNet's weights with).
CONTINUED_RECIPE = "continued_recipe"
RECIPE_AXIS = "recipe"
# The positives ablation's protocol name, and the `ablation.axis` of its records (what it varies: how the
# positive pairs of pretraining were drawn, `same_frame` or `temporal:K`).
POSITIVES = "positives"
POSITIVES_AXIS = "positives"
# The cross-scanner protocol's name, and the metrics entry of its in-scanner test set (the training
# scanners' test images; "test" is the held-out scanner's).
CROSS_SCANNER = "cross_scanner"
IN_SCANNER_TEST = "test_in_scanner"


# Where an SSL method's pretraining starts: random weights (every run made before starts existed, and the
# reference study's main setting) or the backbone's ImageNet weights, continued on the videos.
RANDOM_START = "random"
IMAGENET_START = "imagenet"
STARTS = (RANDOM_START, IMAGENET_START)
# Joins a method and a start other than random in an init's name (folder, job key): method names are
# lower-case letters, digits and '_' (methods.registry), so the name splits back unambiguously.
START_MARK = "@"


def continued_name(method: str, start: str) -> str:
    """The init name of `method` pretrained from `start`: the method's own name from random weights (so a
    from-random row keeps its folder and keys), `simclr@imagenet` from ImageNet weights."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {', '.join(STARTS)}, got {start!r}")
    return method if start == RANDOM_START else f"{method}{START_MARK}{start}"


def init_start(name: str) -> str:
    """Where the init `name` started its pretraining (`random` for every name without a start)."""
    return name.partition(START_MARK)[2] or RANDOM_START


def init_method(name: str) -> str:
    """The method (or baseline) part of an init name: `simclr@imagenet` → `simclr`."""
    return name.partition(START_MARK)[0]


def init_title(name: str) -> str:
    """How pages show an init: `simclr ← imagenet` for a continued run, the name itself otherwise."""
    method, _, start = name.partition(START_MARK)
    return f"{method} ← {start}" if start else name


def scoped_hash_name(protocol: str, eval_protocol: str) -> str:
    """The name under which `protocols.spec.known_protocol_hashes` gives the hash that a run of the ablation
    `protocol` evaluated by `eval_protocol` records (`protocols.spec.scoped_content`): `cross_scanner/knn`."""
    return f"{protocol}/{eval_protocol}"


# The lists that choose which jobs a track runs, not how a job runs: a job's own fraction and seeds
# are in its key (protocols.keys), so overriding these never re-keys a finished job. An ablation's
# `eval_protocols` is such a list too: each run's key holds the evaluation protocol it ran.
REPLICATE_KEYS = ("fractions", "seeds", "pretrain_seeds", "eval_protocols")


def job_overrides(overrides: dict) -> dict:
    """A preset's overrides of a protocol (as a result records them in `train.protocol_overrides`)
    without the replicate lists (`REPLICATE_KEYS`): what changes how a job runs."""
    return {k: v for k, v in overrides.items() if k not in REPLICATE_KEYS}


def default_results_dir() -> Path:
    """$SSLBENCH_RESULTS_DIR, else leaderboard/results of this repository: where runs write and the
    leaderboard reads."""
    env = os.environ.get("SSLBENCH_RESULTS_DIR")
    return Path(env).expanduser() if env else PACKAGE_DIR / "results"


def results_label(results_dir: Path | str, page_dir: Path | str) -> str:
    """How the page written into `page_dir` names its results folder, the same wherever the two are
    moved together: relative to this repository when inside it (the committed page reads the same in
    every clone), else relative to the page's folder (`results` for a results folder beside its page)."""
    path = Path(results_dir).resolve()
    if path.is_relative_to(PACKAGE_DIR.parent):
        return path.relative_to(PACKAGE_DIR.parent).as_posix()
    return Path(os.path.relpath(path, Path(page_dir).resolve())).as_posix()


# --------------------------------------------------------------------------------------- where

def fraction_label(fraction: float) -> str:
    """The folder name of a label fraction: 0.01 → "1pct"."""
    return f"{fraction * 100:g}pct"


def fraction_title(fraction: float) -> str:
    """The column title of a label fraction: 0.01 → "1 %"."""
    return f"{fraction * 100:g} %"


def run_folder_name(pretrain_seed: int) -> str:
    """The folder of one pretraining run's downstream results."""
    return f"pretrain-seed{pretrain_seed}"


def subset_tag(axis: str, level: int) -> str:
    """The name of an ablation's pretraining subset: `diversity-L2`."""
    return f"{axis}-L{level}"


def budget_tag(steps: int) -> str:
    """The folder of a learning-curve budget's runs: `steps-600`. Named by the budget itself, not its
    position in the protocol's list, so adding a budget moves no finished run."""
    return f"steps-{int(steps)}"


def recipe_tag(name: str) -> str:
    """The folder of a continued recipe's runs: `recipe-encoder-lr-0.1`."""
    return f"recipe-{name}"


def positives_tag(positives: str) -> str:
    """The folder of a positives setting's runs: `positives-same-frame`, `positives-temporal-4`."""
    return "positives-" + positives.replace("_", "-").replace(":", "-")


def scanner_tag(scanner: str) -> str:
    """The folder of a held-out scanner's runs: `held-out-<name>`, the name made safe for a path
    (`Voluson E6` → `held-out-Voluson_E6`)."""
    return "held-out-" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", scanner).strip("_.") or "unnamed")


def job_variant(result: dict) -> str:
    """"" for a main-protocol run; for an ablation run its subset (budget, or held-out scanner) and
    evaluation protocol, as in its path (`diversity-L2/linear_probe`, `steps-600/linear_probe`, `recipe-method/linear_probe`,
    `positives-same-frame/linear_probe`,
    `held-out-convex-flat/linear_probe`)."""
    scanner = result.get("scanner")
    if scanner:
        return f"{scanner_tag(scanner['held_out'])}/{scanner['eval_protocol']}"
    ablation = result.get("ablation")
    if not ablation:
        return ""
    if ablation["axis"] == STEPS_AXIS:
        tag = budget_tag(ablation["steps"])
    elif ablation["axis"] == RECIPE_AXIS:
        tag = recipe_tag(ablation["recipe_name"])
    elif ablation["axis"] == POSITIVES_AXIS:
        tag = positives_tag(ablation["positives"])
    else:
        tag = subset_tag(ablation["axis"], ablation["level"])
    return f"{tag}/{ablation['eval_protocol']}" if ablation.get("eval_protocol") else tag


def result_parts(track_id: str, init: str, protocol: str, fraction: float, pretrain_seed: int, seed: int,
                 variant: str = "") -> list[str]:
    """The path of a result below the results folder, as a list of names."""
    return [track_id, init, protocol, *(variant.split("/") if variant else []), fraction_label(fraction),
            run_folder_name(pretrain_seed), f"seed{seed}.json"]


def result_path(results_dir: Path, track_id: str, init: str, protocol: str, fraction: float,
                pretrain_seed: int, seed: int, variant: str = "") -> Path:
    return Path(results_dir).joinpath(*result_parts(track_id, init, protocol, fraction, pretrain_seed, seed,
                                                    variant))


def record_parts(result: dict) -> list[str]:
    """Where a (schema-valid) result belongs below the results folder, by what it records."""
    job = result["job"]
    return result_parts(result["track"]["id"], job["init"], job["protocol"], job["fraction"], job["pretrain_seed"],
                        job["seed"], job_variant(result))


# -------------------------------------------------------------------------------------- schema

@cache
def result_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@cache
def _validator():
    import jsonschema

    schema = result_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _schema_violations(result: object) -> list:
    return sorted(_validator().iter_errors(result), key=lambda e: (list(map(str, e.absolute_path)), e.message))


def schema_errors(result: object) -> list[tuple[str, str]]:
    """(field path, message) for every JSON Schema violation, in a stable order."""
    return [(".".join(map(str, e.absolute_path)) or "(top level)", e.message) for e in _schema_violations(result)]


def validate_result(record: dict, where: str = "result") -> None:
    """Raise ValueError naming the first offending field when `record` breaks the result schema."""
    errors = _schema_violations(record)
    if errors:
        e = errors[0]
        field = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ValueError(f"{where}: field {field}: {e.message}")


# -------------------------------------------------------------------------------------- record

def build_record(*, key: str, track: dict, protocol: dict, init: dict, fraction: float, pretrain_seed: int,
                 seed: int, class_names: list[str], metrics: dict, train: dict, provenance: dict) -> dict:
    """One run's record: the job (its key, init, protocol, fraction and seeds), the track, protocol and
    init records, the class names, the metrics of both splits, how it was trained and its provenance."""
    return {
        "schema_version": SCHEMA_VERSION,
        "job": {"key": key, "init": init["name"], "protocol": protocol["name"], "fraction": float(fraction),
                "pretrain_seed": int(pretrain_seed), "seed": int(seed)},
        "track": track,
        "protocol": protocol,
        "init": init,
        "class_names": list(class_names),
        "metrics": metrics,
        "train": train,
        "provenance": provenance,
    }


def ablation_record(record: dict, *, key: str, protocol: dict, **varied: dict) -> dict:
    """An evaluation run's record as a run of an ablation protocol: the ablation's key and protocol,
    and what the ablation varied (`ablation=`: the pretraining subset and the evaluation protocol;
    `scanner=`: the held-out scanner and the evaluation protocol)."""
    return {**record, "job": {**record["job"], "key": key, "protocol": protocol["name"]}, "protocol": protocol,
            **varied}


def machine_text(provenance: dict) -> str:
    """The kind of machine a result was made on, in a few words: the GPU if one was used, the CPU model,
    the instruction set torch's kernels used, the BLAS, the threads and any environment variable set to
    change them (`provenance.machine`, benchmark.device.machine_record). Two CPU runs of one job agree to
    the bit only where this text agrees. Results made before machines were recorded say what they
    recorded: the device and the threads."""
    machine = provenance.get("machine")
    if not machine:
        return (f"{provenance.get('device', '?')}, {provenance.get('threads', '?')} threads "
                "(instruction set and BLAS not recorded)")
    parts = [machine.get("cpu_model", "?"), machine.get("cpu_capability", "?"), machine.get("blas", "?"),
             f"{machine.get('threads', '?')} threads"]
    if machine.get("gpu"):
        parts.insert(0, f"{machine['gpu']} (CUDA {machine.get('cuda', '?')})")
    env = machine.get("env") or {}
    parts += [f"{k}={v}" for k, v in sorted(env.items()) if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")]
    return ", ".join(parts)


# ------------------------------------------------------------------------------------ files

def write_result(path: Path, record: dict) -> Path:
    """Validate `record` against the schema and write it atomically to `path`."""
    path = Path(path)
    validate_result(record, str(path))
    try:
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    except OSError as exc:  # permissions, read-only or full disk, a file where a folder should be
        raise ResultsError(f"cannot write {path}: {exc.strerror or exc} ({exc.filename or path.parent}); pass "
                           "--results-dir (or set SSLBENCH_RESULTS_DIR) to a writable folder") from exc
    return path


def read_result(path: Path) -> dict | None:
    """The record at `path`, or None if there is none or it is unreadable (then the job reruns)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def result_key(path: Path) -> str | None:
    """The job key a result file records, or None (no file, unreadable, no key)."""
    record = read_result(path)
    try:
        return record["job"]["key"] if record else None
    except (KeyError, TypeError):
        return None


def read_json(path: Path) -> object:
    """The content of a result file; an unreadable one is a ResultFileError saying why."""
    try:
        return json.loads(Path(path).read_text())
    except UnicodeDecodeError as exc:
        raise ResultFileError(path, f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ResultFileError(path, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def find_result_files(paths: Path | str | list) -> list[Path]:
    """Every *.json under the given files/folders, sorted; a path that does not exist is an error."""
    if isinstance(paths, str | Path):
        paths = [paths]
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            # Hidden files are writers' temporaries, never results.
            found.update(q for q in p.rglob("*.json") if q.is_file() and not q.name.startswith("."))
        elif p.is_file():
            found.add(p)
        else:
            raise ResultsError(f"{p}: no such file or folder (give result JSON files or folders holding them)")
    return sorted(found)

"""Check submitted result files: the JSON Schema, a known protocol hash, plausible and mutually
consistent metrics (confusion matrix vs accuracy, balanced accuracy, macro-F1, per-class F1, n),
the results-folder layout, provenance, no two files for one job, and no table mixing runs made with
different preset overrides. One message per file and field.

The known protocol hashes (name → hash of the current protocol file) are passed in by the caller.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from leaderboard.errors import ResultFileError
from leaderboard.load import JOB_COLUMNS, duplicate_jobs, flatten
from leaderboard.results import (
    CONTINUED_RECIPE,
    CROSS_SCANNER,
    IN_SCANNER_TEST,
    LEARNING_CURVE,
    POSITIVES,
    POSITIVES_AXIS,
    RANDOM_START,
    RECIPE_AXIS,
    START_MARK,
    STEPS_AXIS,
    VARIANCE_VS_SIZE,
    find_result_files,
    init_start,
    job_overrides,
    job_variant,
    read_json,
    record_parts,
    schema_errors,
    scoped_hash_name,
)

# Where the caller's list of earlier protocol versions lives, for the messages that point to it.
RETIRED_LIST = "protocols/retired/hashes.toml"
# Reported metrics are rounded floats; recomputing them from the confusion matrix must agree this closely.
TOLERANCE = 1e-4
# What each ablation's runs may vary (`ablation.axis`).
ABLATION_AXES = {VARIANCE_VS_SIZE: ("diversity", "size"), LEARNING_CURVE: (STEPS_AXIS,),
                 CONTINUED_RECIPE: (RECIPE_AXIS,), POSITIVES: (POSITIVES_AXIS,)}
SEED_FILE = re.compile(r"^seed(\d+)\.json$")


@dataclass(frozen=True, order=True)
class Problem:
    path: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.message}"


def metrics_from_confusion(cm: np.ndarray) -> dict[str, object]:
    """accuracy, balanced accuracy (mean recall over classes present in the truth), per-class F1
    (2TP / (2TP + FP + FN); nan where a class is neither present nor predicted) and n."""
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    n = float(cm.sum())
    present = support > 0
    denom = support + predicted
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, np.nan)
        recall = tp[present] / support[present]
    return {"n": int(n), "accuracy": tp.sum() / n if n else math.nan,
            "balanced_accuracy": float(recall.mean()) if recall.size else math.nan, "per_class_f1": f1}


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE


def check_split(result: dict, split: str) -> list[tuple[str, str]]:
    """Consistency of one split's metrics with its confusion matrix and the class names."""
    out = []
    m = result["metrics"][split]
    prefix = f"metrics.{split}"
    classes = result["class_names"]
    k = len(classes)
    if len(set(classes)) != k:
        out.append(("class_names", "class names repeat; each class must appear once"))
    cm = m["confusion_matrix"]
    if len(cm) != k or any(len(row) != k for row in cm):
        out.append((f"{prefix}.confusion_matrix",
                     f"must be {k}×{k} (one row and column per class name), got {len(cm)} rows of lengths "
                     f"{sorted({len(r) for r in cm})}"))
        return out
    if set(m["per_class_f1"]) != set(classes):
        out.append((f"{prefix}.per_class_f1",
                    f"keys {sorted(m['per_class_f1'])} must be the class names {sorted(classes)}"))
        return out
    cm = np.asarray(cm, dtype=np.int64)
    derived = metrics_from_confusion(cm)
    if derived["n"] != m["n"]:
        out.append((f"{prefix}.n", f"{m['n']} but the confusion matrix counts {derived['n']} examples"))
    if derived["n"] == 0:
        out.append((f"{prefix}.confusion_matrix", "is all zeros; a scored split has at least one example"))
        return out
    for name in ("accuracy", "balanced_accuracy"):
        if not _close(m[name], derived[name]):
            out.append((f"{prefix}.{name}",
                         f"{m[name]:.6f} but the confusion matrix gives {derived[name]:.6f}"))
    f1 = derived["per_class_f1"]
    for cls, value in zip(classes, f1, strict=True):
        reported = m["per_class_f1"][cls]
        # A class neither present nor predicted has an undefined F1: 0 and 1 are both conventions.
        ok = reported in (0.0, 1.0) if math.isnan(value) else _close(reported, value)
        if not ok:
            out.append((f"{prefix}.per_class_f1.{cls}",
                        f"{reported:.6f} but the confusion matrix gives {value:.6f}"))
    reported_f1 = np.array([m["per_class_f1"][c] for c in classes], dtype=float)
    defined = ~np.isnan(f1)
    candidates = [reported_f1.mean(), reported_f1[defined].mean() if defined.any() else math.nan]
    if not any(_close(m["macro_f1"], c) for c in candidates):
        out.append((f"{prefix}.macro_f1",
                    f"{m['macro_f1']:.6f} but the mean of the per-class F1 is {candidates[0]:.6f}"))
    return out


def check_layout(result: dict, path: Path) -> list[tuple[str, str]]:
    """Where the file lies must match its job:
    <track>/<init>/<protocol>/<fraction>/pretrain-seed<p>/seed<k>.json."""
    variant = job_variant(result)
    expected = record_parts(result)
    parts = path.parts
    if SEED_FILE.match(path.name) is None or len(parts) < len(expected):
        return [("(path)", f"result files are named <track>/<init>/<protocol>/{'<subset>/<eval protocol>/' if variant else ''}"
                           f"<fraction>/pretrain-seed<p>/seed<k>.json; this one should be {'/'.join(expected)}")]
    if list(parts[-len(expected):]) != expected:
        return [("(path)", f"lies at {'/'.join(parts[-len(expected):])} but its job says {'/'.join(expected)}")]
    return []


def check_scanner(result: dict) -> list[tuple[str, str]]:
    """A cross-scanner run names its held-out scanner, never trained on it, and scores both test sets;
    no other run carries either."""
    scanner, metrics = result.get("scanner"), result["metrics"]
    if result["protocol"]["name"] != CROSS_SCANNER:
        bad = [name for name in ("scanner",) if scanner] + [f"metrics.{IN_SCANNER_TEST}"] * (IN_SCANNER_TEST in metrics)
        return [(name, f"only {CROSS_SCANNER} results carry it") for name in bad]
    if not scanner:
        return [("scanner", f"a {CROSS_SCANNER} result must name its held-out scanner")]
    out = []
    if scanner["held_out"] in scanner["train_scanners"]:
        out.append(("scanner.train_scanners", f"includes the held-out scanner {scanner['held_out']!r}"))
    if IN_SCANNER_TEST not in metrics:
        out.append((f"metrics.{IN_SCANNER_TEST}", "missing; a cross-scanner run scores the training scanners' test "
                                                  "images too"))
    return out


def check_ablation(result: dict) -> list[tuple[str, str]]:
    """An ablation's run says what it varied, as its protocol varies it: a learning-curve run the budget
    (axis `steps`) its checkpoint was pretrained for, a continued-recipe run the recipe (axis `recipe`) its
    checkpoint continued from ImageNet's weights with, a positives run how its checkpoint's positive pairs were
    drawn (axis `positives`), a variance-vs-size run its subset; no other run carries `ablation`."""
    ablation, protocol = result.get("ablation"), result["protocol"]["name"]
    if protocol not in ABLATION_AXES:
        return [("ablation", f"only {', '.join(ABLATION_AXES)} results carry it")] if ablation else []
    if not ablation:
        return [("ablation", f"a {protocol} result must say what it varied")]
    axes = ABLATION_AXES[protocol]
    if ablation["axis"] not in axes:
        return [("ablation.axis", f"a {protocol} run varies {' or '.join(map(repr, axes))}, got {ablation['axis']!r}")]
    pretrain = result["init"].get("pretrain") or {}
    if protocol == LEARNING_CURVE and pretrain.get("steps") != ablation["steps"]:
        return [("ablation.steps", f"{ablation['steps']} but its checkpoint was pretrained for {pretrain.get('steps')} "
                                   "steps (init.pretrain.steps)")]
    if protocol == CONTINUED_RECIPE:
        continued = pretrain.get("continued") or {}
        if continued.get("recipe") != ablation["recipe"]:
            return [("ablation.recipe", f"{ablation['recipe']} but its checkpoint continued with "
                                        f"{continued.get('recipe')} (init.pretrain.continued.recipe)")]
    if protocol == POSITIVES and pretrain.get("positives") != ablation.get("positives"):
        return [("ablation.positives", f"{ablation.get('positives')} but its checkpoint was pretrained with "
                                       f"{pretrain.get('positives')} positives (init.pretrain.positives)")]
    return []


def check_eval_protocol(result: dict, known: dict[str, str],
                        retired: dict[str, dict[str, int]] | None = None) -> list[tuple[str, str]]:
    """An ablation's run (`ablation`, `scanner`) records the evaluation protocol it ran and that
    protocol's hash: like the ablation's own, it must be the current one or a retired version, so that
    a changed evaluation protocol never mixes with results of its earlier content."""
    out = []
    for field in ("ablation", "scanner"):
        varied = result.get(field)
        if not isinstance(varied, dict) or "eval_protocol_hash" not in varied:
            continue
        name, digest = varied["eval_protocol"], varied["eval_protocol_hash"]
        if name in known and digest != known[name] and digest not in (retired or {}).get(name, {}):
            out.append((f"{field}.eval_protocol_hash",
                        f"{digest[:12]}… is not the hash of the current protocols/{name}.toml ({known[name][:12]}…) "
                        f"nor of an earlier version listed in {RETIRED_LIST}; rerun the ablation with the "
                        f"current {name} protocol"))
    return out


def current_hash(result: dict, known: dict[str, str]) -> str | None:
    """The hash `result` must record to be of its protocol's current file: a cross-scanner run's is the
    file's scoped to the evaluation protocol it ran (`protocols.spec.scoped_content`), when `known` has
    it (callers that pass only file hashes get those)."""
    name, scanner = result["protocol"]["name"], result.get("scanner")
    if name == CROSS_SCANNER and isinstance(scanner, dict) and scanner.get("eval_protocol"):
        scoped = known.get(scoped_hash_name(name, scanner["eval_protocol"]))
        if scoped is not None:
            return scoped
    return known.get(name)


def _scope_text(result: dict) -> str:
    scanner = result.get("scanner")
    if result["protocol"]["name"] == CROSS_SCANNER and isinstance(scanner, dict):
        return f", scoped to {scanner.get('eval_protocol')}, which must be in its eval_protocols"
    return ""


def check_result(result: dict, path: Path, known: dict[str, str],
                 retired: dict[str, dict[str, int]] | None = None) -> list[tuple[str, str]]:
    """Every check of one schema-valid result except duplicates; (field, message) pairs. `known`: the
    current hash of each protocol; `retired`: the earlier versions whose results stay valid."""
    out = []
    job, proto, init, prov = result["job"], result["protocol"], result["init"], result["provenance"]
    if job["init"] != init["name"]:
        out.append(("init.name", f"{init['name']!r} but job.init is {job['init']!r}"))
    # A continued init's start is in its name (its folder and job key) and in its record: the two agree.
    start = init_start(init["name"])
    if init.get("start", RANDOM_START) != start:
        out.append(("init.start", f"{init.get('start', RANDOM_START)!r} but the init's name {init['name']!r} says "
                                  f"it started from {start!r} (a continued init is named <method>{START_MARK}<start>)"))
    elif start != RANDOM_START and init["kind"] != "ssl":
        out.append(("init.kind", f"{init['kind']!r}, but {init['name']!r} is an SSL method continued from {start}"))
    if job["protocol"] != proto["name"]:
        out.append(("protocol.name", f"{proto['name']!r} but job.protocol is {job['protocol']!r}"))
    current = current_hash(result, known)
    if proto["name"] not in known:
        out.append(("protocol.name", f"unknown protocol {proto['name']!r}; known: {', '.join(sorted(known)) or 'none'}"))
    elif proto["hash"] != current:
        earlier = (retired or {}).get(proto["name"], {})
        if proto["hash"] not in earlier:
            out.append(("protocol.hash",
                        f"{proto['hash'][:12]}… is not the hash of the current protocols/{proto['name']}.toml "
                        f"({current[:12]}…{_scope_text(result)}) nor of an earlier version listed in "
                        f"{RETIRED_LIST}; rerun with the current protocol"))
        elif earlier[proto["hash"]] != proto["version"]:
            out.append(("protocol.version", f"{proto['version']} but {RETIRED_LIST} lists "
                                            f"hash {proto['hash'][:12]}… as version {earlier[proto['hash']]}"))
    out += check_layout(result, path)
    out += check_scanner(result)
    out += check_ablation(result)
    out += check_eval_protocol(result, known, retired)
    for split in ("val", "test", IN_SCANNER_TEST):
        if split not in result["metrics"]:
            continue
        bad = [f"metrics.{split}.{name}" for name in ("macro_f1", "balanced_accuracy", "accuracy")
               if not math.isfinite(result["metrics"][split][name])]
        bad += [f"metrics.{split}.per_class_f1.{c}" for c, v in result["metrics"][split]["per_class_f1"].items()
                if not math.isfinite(v)]
        out += [(name, "is not a finite number (NaN or infinity); a scored split has a value in [0, 1]")
                for name in bad]
        if not bad:
            out += check_split(result, split)
    if init["kind"] == "ssl":
        if not init.get("checkpoint_hash"):
            out.append(("init.checkpoint_hash", "an SSL init must name the checkpoint it evaluated"))
        if not prov["dataset_fingerprints"].get("pretrain"):
            out.append(("provenance.dataset_fingerprints.pretrain",
                        "an SSL init must record the fingerprint of its pretraining data"))
    if not re.fullmatch(r"[0-9a-f]{7,40}", prov["git_sha"]):
        out.append(("provenance.git_sha", f"{prov['git_sha']!r} is not a git commit SHA (7–40 hex digits); "
                                          "run the benchmark from a git checkout"))
    for name in ("device", "command"):
        if not prov[name].strip():
            out.append((f"provenance.{name}", "is empty"))
    if not prov["dataset_fingerprints"]["downstream"].strip():
        out.append(("provenance.dataset_fingerprints.downstream", "is empty"))
    if not prov["packages"]:
        out.append(("provenance.packages", "is empty; record the versions of the packages used"))
    try:
        datetime.fromisoformat(prov["date"])
    except ValueError:
        out.append(("provenance.date", f"{prov['date']!r} is not an ISO 8601 date-time"))
    if not (math.isfinite(prov["wall_time_s"]) and prov["wall_time_s"] > 0):
        out.append(("provenance.wall_time_s", "must be positive"))
    return out


def validate_paths(paths: list, known: dict[str, str],
                   retired: dict[str, dict[str, int]] | None = None) -> tuple[list[Problem], int]:
    """All problems of the result files under `paths` (files or folders), and how many files were read.
    `known`: protocol name → the hash of its current file; `retired`: name → {hash: version} of the
    earlier versions whose results stay valid (shown apart, never ranked with the current ones)."""
    files = find_result_files(list(paths))
    problems: list[Problem] = []
    rows = []
    for path in files:
        try:
            result = read_json(path)
        except ResultFileError as exc:
            problems.append(Problem(str(path), "(file)", exc.reason))
            continue
        errors = schema_errors(result)
        if errors:
            problems += [Problem(str(path), f, msg) for f, msg in errors]
            continue
        problems += [Problem(str(path), f, msg) for f, msg in check_result(result, path, known, retired)]
        rows.append(flatten(result, path))
    if rows:
        for job, dup_paths in duplicate_jobs(pd.DataFrame(rows)):
            desc = ", ".join(f"{k}={v}" for k, v in zip(JOB_COLUMNS, job, strict=True) if v != "")
            for p in dup_paths:
                others = " and ".join(q for q in dup_paths if q != p)
                problems.append(Problem(p, "job", f"duplicate of {others} (same job: {desc}); keep one"))
        problems += mixed_overrides(rows)
    return sorted(problems), len(files)


def _overrides_text(overrides: dict) -> str:
    return json.dumps(overrides, sort_keys=True, separators=(", ", ": "))


def mixed_overrides(rows: list[dict]) -> list[Problem]:
    """The results that would share a table (one track, protocol, protocol version and variant) but were
    run with other preset overrides of how a job runs than the most common ones among them (replicate
    lists aside: `job_overrides`). A preset changed in the middle of a track leaves such results, and a
    table must not compare runs made differently; ablation runs record no overrides and are not checked."""
    groups: dict[tuple, dict[str, list[str]]] = {}
    for row in rows:
        if row["ablation"]:
            continue
        text = _overrides_text(job_overrides(row["train"].get("protocol_overrides") or {}))
        key = (row["track"], row["preset"], row["protocol"], row["protocol_hash"], row["variant"])
        groups.setdefault(key, {}).setdefault(text, []).append(row["path"])
    problems = []
    for (track, preset, protocol, _, _), by_text in groups.items():
        if len(by_text) < 2:
            continue
        common, paths = max(by_text.items(), key=lambda kv: (len(kv[1]), kv[0]))
        for text, stale in by_text.items():
            if text == common:
                continue
            message = (f"run with the preset's overrides {text}, while {len(paths)} results of track {track}, "
                       f"protocol {protocol} were run with {common}: one table must not compare runs made "
                       f"differently. Rerun the track's jobs with the preset as it is now (`make bench "
                       f"METHOD=<init> PRESET={preset}` reruns every job whose overrides differ from it), or "
                       "remove the results made with overrides no longer used")
            problems += [Problem(p, "train.protocol_overrides", message) for p in stale]
    return problems

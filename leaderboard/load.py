"""Read result files (one JSON per run) into one pandas DataFrame, one row per run.

Every file must pass the result JSON Schema; two files for one job (track, init, protocol,
fraction, seed) are an error naming both. Never imports torch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jsonschema
import pandas as pd

from benchmark.errors import DataError, UserError

PACKAGE_DIR = Path(__file__).resolve().parent
SCHEMA_PATH = PACKAGE_DIR / "result.schema.json"
DEFAULT_RESULTS_DIR = PACKAGE_DIR / "results"
DEFAULT_LEADERBOARD = PACKAGE_DIR / "LEADERBOARD.md"

# What identifies one job; `variant` tells apart the runs of an ablation (subset × evaluation protocol).
JOB_COLUMNS = ["track", "init", "protocol", "variant", "fraction", "pretrain_seed", "seed"]
COLUMNS = [
    "path", "track", "pretrain_dataset", "downstream_dataset", "backbone", "resolution", "preset",
    "init", "init_kind", "family", "checkpoint_hash", "protocol", "protocol_version", "protocol_hash",
    "variant", "fraction", "pretrain_seed", "seed", "macro_f1", "balanced_accuracy", "accuracy", "n_test", "per_class_f1",
    "class_names", "confusion_matrix", "val_macro_f1", "git_sha", "git_dirty", "device", "gpu",
    "wall_time_s", "fp_pretrain", "fp_downstream", "command", "ablation", "diagnostics", "train",
]


def fraction_label(fraction: float) -> str:
    """The folder name of a label fraction: 0.01 → "1pct"."""
    return f"{fraction * 100:g}pct"


def fraction_title(fraction: float) -> str:
    """The column title of a label fraction: 0.01 → "1 %"."""
    return f"{fraction * 100:g} %"


def job_variant(result: dict) -> str:
    """"" for a main-protocol run; for an ablation run its subset and evaluation protocol, as in its
    path (`diversity-L2/linear_probe`)."""
    ablation = result.get("ablation")
    if not ablation:
        return ""
    tag = f"{ablation['axis']}-L{ablation['level']}"
    return f"{tag}/{ablation['eval_protocol']}" if ablation.get("eval_protocol") else tag


@cache
def result_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def schema_errors(result: object) -> list[tuple[str, str]]:
    """(field path, message) for every JSON Schema violation, in a stable order."""
    validator = jsonschema.Draft202012Validator(result_schema())
    errors = sorted(validator.iter_errors(result), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [(".".join(map(str, e.absolute_path)) or "(top level)", e.message) for e in errors]


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
            raise UserError(f"{p}: no such file or folder (give result JSON files or folders holding them)")
    return sorted(found)


def read_json(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text())
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def flatten(result: dict, path: Path | str) -> dict:
    """One DataFrame row from one schema-valid result."""
    track, job, proto, init = result["track"], result["job"], result["protocol"], result["init"]
    test, prov = result["metrics"]["test"], result["provenance"]
    fps = prov["dataset_fingerprints"]
    return {
        "path": str(path),
        "track": track["id"], "pretrain_dataset": track["pretrain_dataset"],
        "downstream_dataset": track["downstream_dataset"], "backbone": track["backbone"],
        "resolution": track["resolution"], "preset": track["preset"],
        "init": job["init"], "init_kind": init["kind"], "family": init.get("family"),
        "checkpoint_hash": init.get("checkpoint_hash"),
        "protocol": job["protocol"], "protocol_version": proto["version"], "protocol_hash": proto["hash"],
        "variant": job_variant(result), "fraction": float(job["fraction"]),
        "pretrain_seed": int(job["pretrain_seed"]), "seed": int(job["seed"]),
        "macro_f1": float(test["macro_f1"]), "balanced_accuracy": float(test["balanced_accuracy"]),
        "accuracy": float(test["accuracy"]), "n_test": int(test["n"]),
        "per_class_f1": dict(test["per_class_f1"]), "class_names": tuple(result["class_names"]),
        "confusion_matrix": test["confusion_matrix"], "val_macro_f1": float(result["metrics"]["val"]["macro_f1"]),
        "git_sha": prov["git_sha"], "git_dirty": bool(prov["git_dirty"]), "device": prov["device"],
        "gpu": bool(prov.get("gpu", False)), "wall_time_s": float(prov["wall_time_s"]),
        "fp_pretrain": fps.get("pretrain"), "fp_downstream": fps["downstream"],
        "command": prov["command"], "ablation": result.get("ablation"),
        "diagnostics": (init.get("pretrain") or {}).get("diagnostics"), "train": result.get("train") or {},
    }


def duplicate_jobs(runs: pd.DataFrame) -> list[tuple[tuple, list[str]]]:
    """(job, files) for every job that more than one file claims."""
    if runs.empty:
        return []
    groups = runs.groupby(JOB_COLUMNS, sort=True)["path"].apply(list)
    return [(job, sorted(paths)) for job, paths in groups.items() if len(paths) > 1]


@dataclass(frozen=True)
class Results:
    """All runs of a results folder; `main` holds the runs of the main tables, `ablation` the rest."""

    runs: pd.DataFrame
    n_files: int

    @property
    def main(self) -> pd.DataFrame:
        return self.runs[self.runs["ablation"].isna()].reset_index(drop=True)

    @property
    def ablation(self) -> pd.DataFrame:
        return self.runs[self.runs["ablation"].notna()].reset_index(drop=True)


def load_results(results_dir: Path | str) -> Results:
    """Read and schema-check every result file under `results_dir` (which may not exist yet: no results)."""
    results_dir = Path(results_dir)
    files = find_result_files(results_dir) if results_dir.exists() else []
    rows = []
    for path in files:
        result = read_json(path)
        problems = schema_errors(result)
        if problems:
            field, message = problems[0]
            more = f" (and {len(problems) - 1} more; `sslbench validate {path}` lists them)" if len(problems) > 1 else ""
            raise DataError(path, f"not a valid result file: {field}: {message}{more}")
        rows.append(flatten(result, path.relative_to(results_dir)))
    runs = pd.DataFrame(rows, columns=COLUMNS)
    dups = duplicate_jobs(runs)
    if dups:
        job, paths = dups[0]
        desc = ", ".join(f"{k}={v}" for k, v in zip(JOB_COLUMNS, job, strict=True) if v != "")
        raise UserError(f"duplicate results for one job ({desc}): "
                        f"{' and '.join(str(results_dir / p) for p in paths)}; keep one of them and delete the other")
    runs = runs.sort_values(JOB_COLUMNS + ["protocol_hash"], kind="stable").reset_index(drop=True)
    return Results(runs=runs, n_files=len(files))

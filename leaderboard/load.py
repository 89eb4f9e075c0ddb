"""Read result files (one JSON per run) into one pandas DataFrame, one row per run.

Every file must pass the result JSON Schema; two files for one job (track, init, protocol,
fraction, seed) are an error naming both. Never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leaderboard.errors import ResultFileError, ResultsError
from leaderboard.results import (
    IN_SCANNER_TEST,
    find_result_files,
    job_variant,
    machine_text,
    read_json,
    schema_errors,
)

# What identifies one job; `variant` tells apart the runs of an ablation (subset × evaluation protocol).
JOB_COLUMNS = ["track", "init", "protocol", "variant", "fraction", "pretrain_seed", "seed"]
COLUMNS = [
    "path", "track", "pretrain_dataset", "downstream_dataset", "backbone", "resolution", "preset",
    "init", "init_kind", "family", "checkpoint_hash", "protocol", "protocol_version", "protocol_hash",
    "variant", "fraction", "pretrain_seed", "seed", "macro_f1", "balanced_accuracy", "accuracy", "n_test", "per_class_f1",
    "class_names", "confusion_matrix", "val_macro_f1", "git_sha", "git_dirty", "device", "machine", "gpu",
    "wall_time_s", "pretrain_wall_time_s", "fp_pretrain", "fp_downstream", "command", "ablation", "diagnostics", "train",
    "data_pretrain", "data_downstream", "skipped_pretrain", "skipped_downstream",
    "scanner", "in_scanner_macro_f1", "recipe", "pretrain_hparams",
]


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
        "machine": machine_text(prov),
        "gpu": bool(prov.get("gpu", False)), "wall_time_s": float(prov["wall_time_s"]),
        "pretrain_wall_time_s": float((init.get("pretrain") or {}).get("wall_time_s", float("nan"))),
        "fp_pretrain": fps.get("pretrain"), "fp_downstream": fps["downstream"],
        "command": prov["command"], "ablation": result.get("ablation"),
        "diagnostics": (init.get("pretrain") or {}).get("diagnostics"), "train": result.get("train") or {},
        # The data cards and skipped-file counts, per role (None where a result does not record them).
        "data_pretrain": (prov.get("data") or {}).get("pretrain"),
        "data_downstream": (prov.get("data") or {}).get("downstream"),
        "skipped_pretrain": (prov.get("skipped_files") or {}).get("pretrain"),
        "skipped_downstream": (prov.get("skipped_files") or {}).get("downstream"),
        "scanner": result.get("scanner"),
        "in_scanner_macro_f1": float(result["metrics"][IN_SCANNER_TEST]["macro_f1"])
        if IN_SCANNER_TEST in result["metrics"] else float("nan"),
        # A run continued from other weights than random ones: the recipe it continued with (every knob).
        "recipe": (((init.get("pretrain") or {}).get("continued")) or {}).get("recipe"),
        # How the checkpoint was trained: the method's hyper-parameters as it ran them, with the batch it ran at
        # (the method's own `batch_size` default is overridden by the run's), positives and steps.
        "pretrain_hparams": pretrain_hparams(init.get("pretrain")),
    }


def pretrain_hparams(pretrain: dict | None) -> dict | None:
    """The hyper-parameters a checkpoint recorded, with the global batch and positives it was trained with;
    None for an init that was not pretrained (or a result written before checkpoints recorded them)."""
    if not pretrain or not isinstance(pretrain.get("hparams"), dict):
        return None
    batch = pretrain.get("global_batch_size") or pretrain.get("batch_size")
    return {**pretrain["hparams"], **({"batch_size": batch} if batch else {}),
            **({"positives": pretrain["positives"]} if pretrain.get("positives") else {})}


def duplicate_jobs(runs: pd.DataFrame) -> list[tuple[tuple, list[str]]]:
    """(job, files) for every job that more than one file claims."""
    if runs.empty:
        return []
    groups = runs.groupby(JOB_COLUMNS, sort=True)["path"].apply(list)
    return [(job, sorted(paths)) for job, paths in groups.items() if len(paths) > 1]


@dataclass(frozen=True)
class Results:
    """All runs of a results folder; `main` holds the runs of the main tables, `ablation` those of the
    variance-vs-size ablation and `cross_scanner` those of the cross-scanner protocol."""

    runs: pd.DataFrame
    n_files: int

    @property
    def main(self) -> pd.DataFrame:
        return self.runs[self.runs["ablation"].isna() & self.runs["scanner"].isna()].reset_index(drop=True)

    @property
    def cross_scanner(self) -> pd.DataFrame:
        return self.runs[self.runs["scanner"].notna()].reset_index(drop=True)

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
            raise ResultFileError(path, f"not a valid result file: {field}: {message}{more}")
        rows.append(flatten(result, path.relative_to(results_dir)))
    runs = pd.DataFrame(rows, columns=COLUMNS)
    dups = duplicate_jobs(runs)
    if dups:
        job, paths = dups[0]
        desc = ", ".join(f"{k}={v}" for k, v in zip(JOB_COLUMNS, job, strict=True) if v != "")
        raise ResultsError(f"duplicate results for one job ({desc}): "
                        f"{' and '.join(str(results_dir / p) for p in paths)}; keep one of them and delete the other")
    runs = runs.sort_values(JOB_COLUMNS + ["protocol_hash"], kind="stable").reset_index(drop=True)
    return Results(runs=runs, n_files=len(files))

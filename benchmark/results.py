"""Result files: where they go, validated writes, and the provenance every result carries.

One JSON per job at `<results>/<track>/<init>/<protocol>/<fraction>/pretrain-seed<p>/seed<k>.json`,
written atomically (leaderboard.atomic): a killed process leaves the old file, the new one, or a
hidden temporary file that no reader globs for `*.json` and that the runner clears.
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from benchmark.errors import UserError
from benchmark.folders import REPO_ROOT
from leaderboard.atomic import atomic_write_text

SCHEMA_PATH = REPO_ROOT / "leaderboard" / "result.schema.json"
PROVENANCE_PACKAGES = ("torch", "torchvision", "lightly", "timm", "pytorch-lightning", "numpy")


def default_results_dir() -> Path:
    env = os.environ.get("SSLBENCH_RESULTS_DIR")
    return Path(env).expanduser() if env else REPO_ROOT / "leaderboard" / "results"


def fraction_label(fraction: float) -> str:
    return f"{fraction * 100:g}pct"


def run_folder_name(pretrain_seed: int) -> str:
    """The folder of one pretraining run's downstream results."""
    return f"pretrain-seed{pretrain_seed}"


def result_path(results_dir: Path, track_id: str, init: str, protocol: str, fraction: float,
                pretrain_seed: int, seed: int) -> Path:
    return (Path(results_dir) / track_id / init / protocol / fraction_label(fraction) / run_folder_name(pretrain_seed)
            / f"seed{seed}.json")


@functools.cache
def _validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validate_result(record: dict, where: str = "result") -> None:
    """Raise ValueError naming the first offending field when `record` breaks the result schema."""
    errors = sorted(_validator().iter_errors(record), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        field = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ValueError(f"{where}: field {field}: {e.message}")


def write_result(path: Path, record: dict) -> Path:
    """Validate `record` against the schema and write it atomically to `path`."""
    path = Path(path)
    validate_result(record, str(path))
    try:
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    except OSError as exc:  # permissions, read-only or full disk, a file where a folder should be
        raise UserError(f"cannot write {path}: {exc.strerror or exc} ({exc.filename or path.parent}); pass "
                        "--results-dir (or set SSLBENCH_RESULTS_DIR) to a writable folder") from exc
    return path


def read_result(path: Path) -> dict | None:
    """The record at `path`, or None if there is none or it is unreadable (then the job reruns)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def result_key(path: Path) -> str | None:
    record = read_result(path)
    try:
        return record["job"]["key"] if record else None
    except (KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------- provenance

@functools.cache
def git_state() -> tuple[str, bool]:
    """(commit SHA, whether tracked files differ from it); ("unknown", True) outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True, timeout=30).stdout.strip() != ""
        return sha, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", True


@functools.cache
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def sslbench_version() -> str:
    try:
        return metadata.version("sslbench")
    except metadata.PackageNotFoundError:
        return "unknown"


def provenance(*, dataset_fingerprints: dict[str, str], device: str, gpu: bool, wall_time_s: float,
               command: str | None = None) -> dict:
    sha, dirty = git_state()
    return {
        "git_sha": sha,
        "git_dirty": dirty,
        "dataset_fingerprints": dataset_fingerprints,
        "packages": package_versions(),
        "device": device,
        "gpu": gpu,
        "wall_time_s": round(float(wall_time_s), 3),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "sslbench_version": sslbench_version(),
    }

"""Where the engine keeps its files, and the early check that a folder can take them.

The results folder is the leaderboard's (`leaderboard.results.default_results_dir`); the frame cache
has its own (`benchmark.data.cache.default_cache_dir`).
"""
from __future__ import annotations

import os
from pathlib import Path

from benchmark.errors import UserError
from leaderboard.atomic import probe_writable

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_runs_dir() -> Path:
    """Pretraining runs, checkpoints, cached features and fine-tune states (not committed)."""
    env = os.environ.get("SSLBENCH_RUNS_DIR")
    return Path(env).expanduser() if env else REPO_ROOT / "runs"


def ensure_writable(folder: Path, what: str = "results folder", flag: str = "--results-dir") -> None:
    """Fail before any work when `folder` cannot take files."""
    folder = Path(folder)
    try:
        probe_writable(folder)
    except OSError as exc:
        raise UserError(f"{what} {folder} is not writable ({exc.strerror}); pass {flag} to a "
                        "writable folder") from exc

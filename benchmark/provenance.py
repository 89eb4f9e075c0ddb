"""The provenance every result carries: the code (git SHA and dirty flag), the package versions, the
device, the wall time, the date and the command that made it."""
from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from benchmark.folders import REPO_ROOT

PROVENANCE_PACKAGES = ("torch", "torchvision", "lightly", "timm", "pytorch-lightning", "numpy")


# What runs write into the checkout: the committed results and the page made from them. A change there
# is not a change of the code, so it does not make a result's commit "dirty" (a track rerun in several
# commands, or into a cleared results folder, would otherwise record every result after the first
# write as made by uncommitted code).
RUN_OUTPUTS = ("leaderboard/results", "leaderboard/LEADERBOARD.md", "leaderboard/figures", "leaderboard/site")


@functools.cache
def git_state() -> tuple[str, bool]:
    """(commit SHA, whether tracked files other than `RUN_OUTPUTS` differ from it); ("unknown", True)
    outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *(f":(exclude){path}" for path in RUN_OUTPUTS)], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True, timeout=30).stdout.strip() != ""
        return sha, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", True


def require_git_checkout() -> None:
    """Fail before any work when results would record no commit: `sslbench validate` and the leaderboard
    refuse a result whose `provenance.git_sha` is not a SHA, so hours of pretraining run from a copy of
    the code without its `.git` (a tarball, a tree copied to an offline GPU machine) would be lost."""
    from benchmark.errors import UserError

    if git_state()[0] != "unknown":
        return
    why = "git is not installed" if shutil.which("git") is None else "no .git folder above it"
    raise UserError(f"{REPO_ROOT} is not a git checkout ({why}): its results would record the commit as 'unknown', "
                    "and `sslbench validate` and the leaderboard refuse them. Run from a clone of the repository "
                    "(`git clone --depth 1` is enough), or copy the checkout together with its .git folder")


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
        "command": command if command is not None else portable_command(sys.argv),
        "sslbench_version": sslbench_version(),
    }


# The folders a command names by their role, not by where they were on the machine that ran it: a result
# says how to make it again anywhere, and does not publish the folders of whoever made it.
FOLDER_ROLES = {"--results-dir": "RESULTS_DIR", "--runs-dir": "RUNS_DIR", "--run-dir": "RUNS_DIR",
                "--cache-dir": "CACHE_DIR", "--out": "OUT_DIR", "--work-dir": "WORK_DIR"}
# An absolute path at the start of an argument or after `kind:` / `NAME=` (`videos:/data/clips`), to its end.
_ABSOLUTE = re.compile(r"(^|(?<=[:=]))(/.*)$")


def portable_command(argv: list[str]) -> str:
    """The command line as a result records it: the program as `sslbench` (also when run as
    `python -m benchmark`), the folders of `FOLDER_ROLES` as their role, and any other absolute path as
    its last component under `...` (`videos:.../fetal_clips`), or relative to this repository when it
    lies inside it."""
    out, args, i = [], list(argv[1:]), 0
    while i < len(args):
        flag, eq, _value = args[i].partition("=")
        if flag in FOLDER_ROLES:
            if eq:
                out.append(f"{flag}={FOLDER_ROLES[flag]}")
            else:
                out.append(flag)
                if i + 1 < len(args):
                    out.append(FOLDER_ROLES[flag])
                    i += 1
        else:
            out.append(_ABSOLUTE.sub(lambda m: _portable_path(m.group(2)), args[i]))
        i += 1
    return shlex.join(["sslbench", *out])


def _portable_path(path: str) -> str:
    p = Path(os.path.normpath(path))
    if p.is_relative_to(REPO_ROOT):
        return p.relative_to(REPO_ROOT).as_posix() or "."
    return f".../{p.name}" if p.name else "..."

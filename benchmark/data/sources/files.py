"""Input files of the file-based sources: the extensions each reader takes, listing a folder, the
files' identity for the cache fingerprint, required folders and files, subjects parsed from paths,
and the split names a source may use."""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from benchmark.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".gif", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
DICOM_EXTENSIONS = (".dcm", ".dicom", ".dic")
# Split names as manifests, split folders and Hugging Face datasets spell them → the cache's splits.
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}


def list_files(root: Path, extensions: Iterable[str]) -> list[str]:
    """Relative POSIX paths of the files under `root` with one of `extensions` (any case), sorted;
    hidden files and folders are left out."""
    exts = tuple(e.lower() for e in extensions)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(exts):
                found.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(found)


def require_dir(path: str, kind: str, what: str) -> Path:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"{kind}:{path}: {root} is not a folder ({what})")
    return root


def require_file(path: str, kind: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{kind}:{path}: {p} is not a file ({what})")
    return p


def compile_subject_pattern(pattern: str | None) -> re.Pattern | None:
    if not pattern:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"--subject-pattern {pattern!r} is not a valid regular expression: {exc}") from exc
    if compiled.groups < 1:
        raise UserError(f"--subject-pattern {pattern!r} needs a group, e.g. '(patient\\d+)_', whose "
                        "match is the subject id")
    return compiled


def subject_from_pattern(pattern: re.Pattern, name: str) -> str:
    """Group 1 of `pattern` searched in `name`; raises ValueError (→ a skipped file) when it does not match."""
    m = pattern.search(name)
    if not m or not m.group(1):
        raise ValueError(f"--subject-pattern {pattern.pattern!r} does not match {name!r}")
    return m.group(1)


def subject_of(rel_path: str, pattern: re.Pattern | None) -> str:
    """Subject of a file: the pattern's group 1, else its first sub-folder, else its name without extension."""
    if pattern is not None:
        return subject_from_pattern(pattern, rel_path)
    parts = Path(rel_path).parts
    return parts[0] if len(parts) > 1 else Path(rel_path).stem


def names_subject(rel_path: str, pattern: re.Pattern | None) -> bool:
    """Whether `subject_of` finds a subject for the file (the pattern, or a sub-folder) rather than
    falling back to the file itself."""
    return pattern is not None or len(Path(rel_path).parts) > 1

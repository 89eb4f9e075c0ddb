"""What identifies a source's input files in its frame cache's fingerprint (see `Source.fingerprint_parts`):
a change here rebuilds the cache, so these few functions decide whether a changed input is noticed."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

# A folder of input files up to this total size is identified by the digests of their bytes, so the same
# data give the same fingerprint (and the same job keys) on every machine: a download or a copy sets new
# mtimes, and the public data sets are well under this (the African fetal planes 54 MB, the POCUS clips
# 77 MB, FETAL_PLANES_DB 2.1 GB; hashing them takes about 0.3 s per 100 MB). A larger folder (a hospital's
# videos) is identified by each file's size and mtime: hashing terabytes on every run would cost more
# than the decode it guards.
FOLDER_CONTENT_HASH_MAX_BYTES = 4 * 2**30


# One command prepares its caches several times (the pool, the downstream set, the in-domain pool made
# from it): each file is read once per process, as long as its inode, size and times say it is the same
# file (ctime moves on every write, even one that puts the mtime back).
_DIGESTS: dict[tuple, str] = {}


def _content_digest(path: Path, st: os.stat_result) -> str:
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        with open(path, "rb") as f:
            _DIGESTS[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _DIGESTS[key]


def files_identity(root: Path, rel_paths: Iterable[str], resolved: Iterable[Path] | None = None) -> dict:
    """Identity of input files: count + a digest of (relative path, size, content digest), or of
    (relative path, size, mtime_ns) when together they exceed FOLDER_CONTENT_HASH_MAX_BYTES; `identity`
    says which. `resolved` gives the files' locations when they are not `root / rel`."""
    rel_paths = list(rel_paths)
    locations = list(resolved) if resolved is not None else [root / rel for rel in rel_paths]
    if len(locations) != len(rel_paths):
        raise ValueError(f"{len(rel_paths)} relative paths but {len(locations)} locations")
    stats = []
    for location in locations:
        try:
            stats.append(os.stat(location))
        except OSError:
            stats.append(None)  # a missing file is reported by items(); it still changes the key
    by_content = sum(st.st_size for st in stats if st is not None) <= FOLDER_CONTENT_HASH_MAX_BYTES
    h = hashlib.sha256()
    for rel, location, st in zip(rel_paths, locations, stats, strict=True):
        if st is None:
            ident = [rel, None, None]
        elif by_content:
            ident = [rel, st.st_size, _content_digest(Path(location), st)]
        else:
            ident = [rel, st.st_size, st.st_mtime_ns]
        h.update(json.dumps(ident).encode())
    return {"n_files": len(rel_paths), "files_sha256": h.hexdigest(), "identity": "content" if by_content else "stat"}


# A single input file up to this size is identified by a digest of its bytes (label tables,
# manifests, FileLists: one label swapped keeps the size, and a copy or a coarse file-system clock
# can keep the mtime). A larger one (an HDF5 of videos) by size and mtime: hashing gigabytes on
# every run would cost more than the decode it guards, and rewriting such a file changes its mtime.
CONTENT_HASH_MAX_BYTES = 64 * 2**20


def file_identity(path: Path) -> dict:
    """What identifies one input file in a cache fingerprint: its content, read in full when small."""
    st = os.stat(path)
    if st.st_size <= CONTENT_HASH_MAX_BYTES:
        with open(path, "rb") as f:
            return {"name": path.name, "size": st.st_size, "sha256": hashlib.file_digest(f, "sha256").hexdigest()}
    return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}

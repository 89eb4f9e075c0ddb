"""What identifies a source's input files in its frame cache's fingerprint (see `Source.fingerprint_parts`):
a change here rebuilds the cache, so these few functions decide whether a changed input is noticed."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path


def files_identity(root: Path, rel_paths: Iterable[str], resolved: Iterable[Path] | None = None) -> dict:
    """Identity of input files without reading them: count + a digest of (relative path, size, mtime_ns).
    `resolved` gives the files' locations when they are not `root / rel`."""
    h = hashlib.sha256()
    n = 0
    rel_paths = list(rel_paths)
    locations = list(resolved) if resolved is not None else [root / rel for rel in rel_paths]
    for rel, location in zip(rel_paths, locations, strict=True):
        try:
            st = os.stat(location)
            ident = [rel, st.st_size, st.st_mtime_ns]
        except OSError:
            ident = [rel, None, None]  # a missing file is reported by items(); it still changes the key
        h.update(json.dumps(ident).encode())
        n += 1
    return {"n_files": n, "files_sha256": h.hexdigest()}


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

"""Atomic file writes: write a hidden temporary file beside the target, then rename it into place.

`os.replace` within one folder is atomic, so a reader (or a process resuming after a kill) sees the
old file or the whole new one, never a part. The temporary file is `.<name>.tmp-<pid>`: hidden, so
no reader globbing `*.json` picks it up, and named for its writer, so `remove_stale_temp_files`
can tell a dead writer's leftover from a live one's file.

Every writer of the project goes through here (result files, encoder checkpoints, Lightning's
training state, cached features, fine-tune states, LEADERBOARD.md, the doctor's table). It imports
nothing from the project, so every layer may use it; it lives in `leaderboard/` because that is the
bottom layer, which imports no other.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

TMP_MARK = ".tmp-"


def temp_path(path: Path) -> Path:
    """The temporary file this process writes before renaming it to `path`."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the caller to write (by name, for writers that take a
    path); when the block ends without an error it replaces `path`, otherwise it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def probe_writable(folder: Path) -> None:
    """Create `folder` if needed and write and remove a file in it; raises OSError when it cannot
    take files (permissions, a read-only or full disk, a file where a folder should be)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write-test{TMP_MARK}{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def remove_stale_temp_files(folder: Path) -> int:
    """Remove temporary files left by killed writers (their process is gone). Returns how many."""
    removed = 0
    if not Path(folder).exists():
        return 0
    for p in Path(folder).rglob(f".*{TMP_MARK}*"):
        try:
            pid = int(p.name.rsplit(TMP_MARK, 1)[1])
            if pid != os.getpid():
                os.kill(pid, 0)  # pragma: no mutate (another signal number would hit a live process)
                continue  # a live writer
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        p.unlink(missing_ok=True)
        removed += 1
    return removed

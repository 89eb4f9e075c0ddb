"""Decode many files in parallel worker processes, in a deterministic order, with a progress bar.

A file that raises while being decoded comes back as `Skipped(path, reason)` instead of stopping
the others; the cache builder then applies `--on-error`.
"""
from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from benchmark.data.source import Clip, Skipped
from benchmark.errors import UserError

Task = TypeVar("Task")


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:
        return os.cpu_count() or 1


def reason_of(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _guarded(fn: Callable[[Task], Clip | Skipped], task: Task, path: str) -> Clip | Skipped:
    try:
        return fn(task)
    except Exception as exc:  # any decoder error is this file's problem, reported with its reason
        return Skipped(path, reason_of(exc))


def decode_all(fn: Callable[[Task], Clip | Skipped], tasks: Sequence[Task], paths: Sequence[str], *,
               desc: str = "decoding", workers: int = 0) -> Iterator[Clip | Skipped]:
    """Yield `fn(task)` for every task, in the order of `tasks`; `paths[i]` names task i in reports.

    `fn` must be a module-level function (it is sent to worker processes). `workers` = 0 uses every
    core this process may use; 1 (or a single task) decodes in this process.
    """
    from tqdm.auto import tqdm

    if len(tasks) != len(paths):
        raise ValueError("one path per task is needed")
    workers = workers or default_workers()
    bar = tqdm(total=len(tasks), desc=desc, unit="file", leave=False, file=sys.stderr, disable=None)
    try:
        if workers <= 1 or len(tasks) <= 1:
            for task, path in zip(tasks, paths, strict=True):
                yield _guarded(fn, task, path)
                bar.update(1)
            return
        window = 4 * workers  # bounded look-ahead: decoded clips wait in memory only briefly
        # The platform's default start method (as torch's DataLoader): fork starts fast, and spawn or
        # forkserver would re-import the caller's __main__, which breaks scripts without a main guard.
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            pending: deque[tuple[Future, str]] = deque()
            it = iter(zip(tasks, paths, strict=True))
            try:
                for task, path in it:
                    pending.append((pool.submit(_guarded, fn, task, path), path))
                    if len(pending) >= window:
                        break
                while pending:
                    future, path = pending.popleft()
                    try:
                        result = future.result()
                    except BrokenProcessPool as exc:
                        in_flight = [path] + [p for _, p in pending]
                        raise UserError(
                            "a decoding worker process died (out of memory, or a crash inside a decoder) "
                            f"while reading one of: {', '.join(in_flight[:8])}"
                            f"{' …' if len(in_flight) > 8 else ''}; run again with -o workers=1 to find "
                            "the file") from exc
                    for task, next_path in it:
                        pending.append((pool.submit(_guarded, fn, task, next_path), next_path))
                        break
                    yield result
                    bar.update(1)
            finally:
                for future, _ in pending:
                    future.cancel()
    finally:
        bar.close()

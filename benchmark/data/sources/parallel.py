"""Decode many files in parallel worker processes, in a deterministic order, with a progress bar.

A file that raises while being decoded comes back as `Skipped(path, reason)` instead of stopping
the others; the cache builder then applies `--on-error`.
"""
from __future__ import annotations

import multiprocessing
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

# The modules whose functions run in decoding workers (imported once, by the forkserver).
WORKER_MODULES = ("benchmark.data.sources.readers", "benchmark.data.sources.hf", "benchmark.data.simulator.source")


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:
        return os.cpu_count() or 1


def _pool_context(fn: Callable) -> multiprocessing.context.BaseContext:
    """Workers fork from a forkserver: a fresh single-threaded process, never from this one.

    Forking this process copies locks that its other threads may hold at that instant (pytest-xdist's
    I/O thread, a progress bar's monitor, a logger's writer thread, a decoder's thread pool); a worker
    that needs one of them waits for ever. That hang was seen (a worker in futex_wait, the suite
    stalled); Python 3.14 made forkserver the default on Linux for the same reason. The server imports
    `__main__` (as spawn does: a script that starts workers needs an `if __name__ == "__main__":`
    guard) and the modules whose functions workers run once, so that each worker starts from a copy of
    it in milliseconds instead of importing them again (about 2 s with torch, per worker and pool).
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", *WORKER_MODULES, fn.__module__])  # used when the server starts
    return ctx


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
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=_pool_context(fn)) as pool:
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
                            "a decoding worker process died (out of memory, a crash inside a decoder, or a "
                            "script of yours without an `if __name__ == \"__main__\":` guard: workers import "
                            "the script that started them) "
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

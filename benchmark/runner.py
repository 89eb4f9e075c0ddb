"""The job runner: run a list of independent jobs, each producing one result file.

Generic over what a job computes: a `Job` is a key (the hash of everything that determines it), the
path of its result file and a callable returning the result record. A job whose file exists with the
same key is finished and skipped (`force` reruns it); `shard=(i, n)` keeps every n-th job starting
at i, so n processes (a SLURM array, any scheduler) share one grid and meet in one results folder.
Results are written atomically and validated (leaderboard.results), so a killed run loses at most
the job in progress and leaves no partial file. A `Deadline` stops a run cleanly between jobs when
the next one is not expected to finish in the time left (a scheduler's time limit, a GPU lease).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.errors import UserError
from leaderboard.atomic import remove_stale_temp_files
from leaderboard.results import result_key, write_result

if TYPE_CHECKING:
    from benchmark.reference import ResultSlots

# Exit status when a deadline stopped the work before the end: EX_TEMPFAIL of sysexits.h (a temporary
# condition; run the same command again to continue), for schedulers that requeue.
TIME_LIMIT_EXIT = 75


@dataclass
class Job:
    key: str
    output: Path
    produce: Callable[[], dict]  # returns the result record; its ["job"]["key"] must equal `key`
    label: str = ""  # shown in the progress display, e.g. "vicreg finetune 10pct seed3"
    cleanup: Callable[[], None] | None = None  # after the result is written (e.g. drop resume state)


@dataclass
class RunSummary:
    total: int  # jobs in this shard
    skipped: int  # already finished
    done: list[Path] = field(default_factory=list)  # written by this run
    seconds: float = 0.0
    stopped: bool = False  # the deadline came before every job was run

    @property
    def left(self) -> int:
        return self.total - self.skipped - len(self.done)


@dataclass
class Deadline:
    """A time after which no new work starts: work is started only while the time left is at least
    its expected duration plus `margin` seconds. Work already running is never cut short here."""

    at: float  # time.monotonic() value
    margin: float = 0.0
    length: float | None = None  # seconds from its start, when made by `after`

    @classmethod
    def after(cls, seconds: float, margin: float = 0.0) -> Deadline:
        return cls(time.monotonic() + float(seconds), float(margin), float(seconds))

    def left(self) -> float:
        return self.at - time.monotonic()

    def allows(self, expected_s: float = 0.0) -> bool:
        return self.left() >= expected_s + self.margin


def out_of_time(deadline: Deadline | None, expected_s: float, what: str) -> bool:
    """True (and says so) when `deadline` (or None: no limit) leaves no time for `what`."""
    if deadline is None or deadline.allows(expected_s):
        return False
    print(f"time limit: {deadline.left():.0f} s left, not enough to {what} (expected {expected_s:.0f} s, the "
          "longest so far); finished work is kept, run the same command again to continue",
          file=sys.stderr, flush=True)
    return True


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`"i/N"` (0 <= i < N) → (i, N); None → None."""
    if text is None:
        return None
    i_text, sep, n_text = str(text).partition("/")
    try:
        i, n = int(i_text), int(n_text)
    except ValueError:
        i, n = -1, 0
    if not sep or n < 1 or not 0 <= i < n:
        raise UserError(f"--shard expects i/N with 0 <= i < N (e.g. 0/4 … 3/4; a SLURM array passes "
                        f"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT), got {text!r}")
    return i, n


def select_shard(jobs: Sequence[Job], shard: tuple[int, int] | None) -> list[Job]:
    if shard is None:
        return list(jobs)
    i, n = shard
    return list(jobs[i::n])


def is_finished(job: Job) -> bool:
    return result_key(job.output) == job.key


def run_jobs(jobs: Sequence[Job], *, force: bool = False, shard: tuple[int, int] | None = None,
             progress: bool = True, title: str = "jobs", deadline: Deadline | None = None,
             slots: ResultSlots | None = None) -> RunSummary:
    """Run the jobs of `shard` that are not finished yet (all of them with `force`). With a
    `deadline`, a job starts only if the longest job of this run so far would still fit (jobs of
    one grid differ, e.g. a 1 % probe and a 100 % fine-tune: the longest errs on the safe side).
    `slots` (benchmark.reference) moves a job whose slot holds a committed result of another key to
    the user's own results folder, where it is looked up and written."""
    keys = [j.key for j in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("two jobs share one key; a job list must not repeat a job")
    mine = select_shard(jobs, shard)
    if slots is not None:
        mine = [replace(j, output=slots.place(j.output, j.key)) for j in mine]
    for folder in {j.output.parent for j in mine}:
        remove_stale_temp_files(folder)
    todo = [j for j in mine if force or not is_finished(j)]
    summary = RunSummary(total=len(mine), skipped=len(mine) - len(todo))
    where = f" (shard {shard[0]}/{shard[1]})" if shard else ""
    if progress:
        print(f"{title}{where}: {len(mine)} jobs, {summary.skipped} already finished, {len(todo)} to run",
              file=sys.stderr, flush=True)
    start = time.perf_counter()
    from tqdm.auto import tqdm

    with tqdm(total=len(todo), desc=title, unit="job", disable=not progress or not todo,
              file=sys.stderr, dynamic_ncols=True) as bar:
        longest = 0.0
        for job in todo:
            if deadline is not None and not deadline.allows(longest):
                summary.stopped = True
                break
            started = time.perf_counter()
            bar.set_postfix_str(job.label or job.output.name, refresh=True)
            record = job.produce()
            got = (record.get("job") or {}).get("key")
            if got != job.key:
                raise ValueError(f"job {job.label}: the record's job.key {got!r} differs from the job's key")
            write_result(job.output, record)
            if job.cleanup is not None:
                job.cleanup()
            summary.done.append(job.output)
            longest = max(longest, time.perf_counter() - started)
            bar.update(1)
    summary.seconds = time.perf_counter() - start
    if summary.stopped and progress:
        print(f"{title}{where}: time limit: stopped with {summary.left} of {len(todo)} jobs not started "
              f"({deadline.left():.0f} s left, the longest job took {longest:.0f} s); run the same command "
              "again to continue", file=sys.stderr, flush=True)
    return summary

"""A session: one time-boxed run on a machine held for a limited time (a GPU lease, a
scheduler's allocation): check every device path (`sslbench doctor`), then run a track's grid one
init at a time — an SSL method's pretraining with all its downstream jobs, or a baseline's jobs —
while the next one is expected to fit, and leave everything in one folder:

    OUT/doctor/doctor.md, doctor.json    the device check (its table: the perf table of the machine)
    OUT/results/<track>/...              result files: the finished ones it started from, and the new ones
    OUT/logs/<step>.log                  each step's full output
    OUT/runs/pretrain/<track>/...        checkpoints of methods whose jobs are not all done; put them back
                                         in the runs folder of the next session, so their jobs keep their keys
    OUT/SESSION.md, session.json         what ran, jobs done of jobs planned, what is left

Why one init at a time rather than `--shard i/N` of the whole grid: every shard needs every
method's checkpoint, so on a fresh machine each shard would pretrain all methods again, and GPU
pretraining is not bitwise reproducible: a new checkpoint changes the keys of all its jobs. An
init's pretraining and its jobs in one session stay consistent. Each step is a subprocess, so a
crash is recorded and the next step runs; at the session's end a step still running is interrupted
(the runner keeps every finished job).
"""
from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmark.runner import TIME_LIMIT_EXIT, Deadline
from benchmark.steps import INTERRUPT_GRACE_S, last_error_line, run_step

EXIT_FAILED = 1


@dataclass(frozen=True)
class SessionSettings:
    """What `sslbench session` was asked to do (its flags, parsed)."""

    out: Path  # everything the session writes
    preset: str = "auto"
    methods: str = "all"  # SSL method(s) and baselines, as for `sslbench bench --method`
    baselines: bool = True  # the imagenet and random baselines alongside the methods
    protocols: list[str] | None = None  # only these protocols (None: all)
    deadline: Deadline | None = None  # the session's end
    margin: float = 30.0  # seconds kept free at the end for the summary and a late step
    doctor: bool = True  # run the device check first
    doctor_timeout: float = 300.0
    doctor_args: tuple[str, ...] = ()  # passed to `sslbench doctor`
    from_results: Path | None = None  # finished results to start from (default: the results folder)
    runs_dir: Path | None = None
    cache_dir: str | None = None
    start: str | None = None  # where the SSL methods start (`--start`; default: the preset's)


@dataclass
class Unit:
    """One init of the grid: its result files, and what this session did with it. `method`: the SSL method
    or baseline that `sslbench bench --method` names (`init` is its row: `simclr@imagenet` when continued)."""

    init: str
    kind: str  # "ssl" | "baseline"
    planned: list[Path]
    done_before: int = 0
    done: int = 0
    status: str = "not started"
    seconds: float | None = None
    log: str | None = None
    note: str = ""
    method: str = ""

    def __post_init__(self) -> None:
        self.method = self.method or self.init


@dataclass
class Session:
    out: Path
    preset: str
    track: str
    started: float = field(default_factory=time.monotonic)
    steps: list[dict] = field(default_factory=list)
    units: list[Unit] = field(default_factory=list)
    doctor: dict | None = None
    kept_checkpoints: list[str] = field(default_factory=list)
    not_run: str | None = None  # why no grid step ran at all


def run_session(settings: SessionSettings) -> int:
    """Run the session; its exit status: 0 when every planned job is done, TIME_LIMIT_EXIT when time ran
    out first, EXIT_FAILED when a step failed."""
    from benchmark.folders import default_runs_dir
    from benchmark.track import method_init_name, parse_methods, track_context
    from leaderboard.results import default_results_dir
    from protocols.presets import resolve_preset

    out = settings.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    deadline = settings.deadline
    preset = resolve_preset(settings.preset)  # once, so every step runs the same track
    runs_dir = (settings.runs_dir or default_runs_dir()).resolve()
    # Without a git checkout every result would be refused later: the device check still runs, the grid does not.
    ctx = track_context(preset, protocols=settings.protocols, results_dir=out / "results", runs_dir=runs_dir,
                        cache_dir=settings.cache_dir, new_results=False, start=settings.start)
    session_blocked = _not_a_checkout()
    track = ctx.track.id
    session = Session(out=out, preset=preset, track=track, not_run=session_blocked)
    _seed_results(Path(settings.from_results or default_results_dir()) / track, ctx.results_dir / track)

    methods, baselines = parse_methods(settings.methods, baselines=settings.baselines)
    session.units = [Unit(b, "baseline", planned_results(ctx, b)) for b in baselines] + \
                    [Unit(method_init_name(ctx, m), "ssl", planned_results(ctx, method_init_name(ctx, m)), method=m)
                     for m in methods]
    for unit in session.units:
        unit.done_before = unit.done = count_done(unit.planned, ctx)
    planned = sum(len(u.planned) for u in session.units)
    _say(f"session: track {track}, {sum(u.done for u in session.units)} of {planned} jobs already done"
         + (f", {max(0.0, deadline.left()):.0f} s of {deadline.length:.0f} s left" if deadline else ""))

    failed = False
    if settings.doctor:
        failed |= _run_doctor(session, settings)
    failed |= session.not_run is not None
    blocked = session.not_run or _missing_dependencies(session)
    longest = {"ssl": 0.0, "baseline": 0.0}
    for unit in session.units:
        if unit.done == len(unit.planned):
            unit.status = "complete"
            continue
        if blocked:  # every step would fail (on its first import), or make results that are refused
            unit.note = "not a git checkout" if session.not_run else f"the device check found missing modules: {blocked}"
            continue
        if deadline is not None and not deadline.allows(longest[unit.kind] + settings.margin):
            unit.status = "not started"
            unit.note = f"time limit: {max(0.0, deadline.left()):.0f} s left"
            continue
        _run_unit(session, unit, ctx, settings)
        longest[unit.kind] = max(longest[unit.kind], unit.seconds or 0.0)
        failed |= unit.status == "failed"

    session.kept_checkpoints = _keep_checkpoints(session, runs_dir)
    left = sum(len(u.planned) - u.done for u in session.units)
    code = EXIT_FAILED if failed else (TIME_LIMIT_EXIT if left else 0)
    _write_summary(session, code, deadline)
    return code


# ----------------------------------------------------------------------------------- the plan

def planned_results(ctx, init: str) -> list[Path]:
    """The result files of `init` on the track: every protocol × fraction × pretraining seed × seed
    the grid runs (protocols.grid.job_seeds)."""
    from leaderboard.results import result_path
    from protocols.grid import job_seeds

    return [result_path(ctx.results_dir, ctx.track.id, init, spec.name, fraction, pretrain_seed, seed)
            for spec in ctx.protocols for fraction in spec.fractions for pretrain_seed in spec.pretrain_seeds
            for seed in job_seeds(spec, fraction)]


def count_done(paths: list[Path], ctx) -> int:
    """Result files that exist for the current protocols of the track. Without the checkpoint an SSL
    job's key cannot be computed, so this compares what a result records: the track, the protocol's
    hash and the preset's overrides of how a job runs; the runner compares keys when the job is run."""
    from leaderboard.results import job_overrides, read_result

    specs = {spec.name: spec for spec in ctx.protocols}
    done = 0
    for path in paths:
        record = read_result(path)
        try:
            spec = specs[record["protocol"]["name"]]
            ok = (record["track"]["id"] == ctx.track.id and record["protocol"]["hash"] == spec.hash
                  and job_overrides(record["train"].get("protocol_overrides") or {}) == spec.key["overrides"])
        except (KeyError, TypeError):
            ok = False
        done += ok
    return done


def _seed_results(source: Path, target: Path) -> None:
    """Copy the finished results of the track into the session's results folder (never over a file
    the session folder already has: that one is newer)."""
    if not source.is_dir() or source.resolve() == target.resolve():
        return
    for path in source.rglob("*.json"):
        dest = target / path.relative_to(source)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


# ---------------------------------------------------------------------------------- the steps

def _run_doctor(session: Session, settings: SessionSettings) -> bool:
    """Run the device check; True when it failed (a row failed, or it did not finish)."""
    limit = settings.doctor_timeout
    deadline = settings.deadline
    if deadline is not None:
        limit = min(limit, deadline.left() - settings.margin)
    if limit <= 0:
        session.doctor = {"status": "not started", "note": "time limit"}
        return False
    _say(f"session: device check (sslbench doctor, at most {limit:.0f} s) …")
    command = [sys.executable, "-m", "benchmark", "doctor", "--out", str(session.out / "doctor"), *settings.doctor_args]
    code, seconds = run_step(command, session.out / "logs" / "doctor.log", limit)
    table = session.out / "doctor" / "doctor.md"
    status = {0: "ok", 1: "failed rows", None: f"stopped after {limit:.0f} s"}.get(code, f"exit status {code}")
    session.doctor = {"status": status, "seconds": round(seconds, 1), "log": "logs/doctor.log",
                      "table": "doctor/doctor.md" if table.exists() else None}
    session.steps.append({"step": "doctor", "command": shlex.join(command), "exit": code,
                          "seconds": round(seconds, 1)})
    _say(f"session: device check: {status} ({seconds:.0f} s)")
    if table.exists():
        _say(table.read_text())
    return code != 0


def _not_a_checkout() -> str | None:
    """Why no grid step may run from this copy of the code (benchmark.provenance), or None."""
    from benchmark.errors import UserError
    from benchmark.provenance import require_git_checkout

    try:
        require_git_checkout()
    except UserError as exc:
        _say(f"session: {exc}; only the device check runs")
        return str(exc)
    return None


def _missing_dependencies(session: Session) -> str | None:
    """The doctor's failed dependency row, if it failed."""
    report = session.out / "doctor" / "doctor.json"
    if session.doctor is None or not report.exists():
        return None
    for row in json.loads(report.read_text())["rows"]:
        if row["id"] == "dependencies" and row["status"] == "failed":
            return row["detail"]
    return None


def _run_unit(session: Session, unit: Unit, ctx, settings: SessionSettings) -> None:
    deadline = settings.deadline
    command = [sys.executable, "-m", "benchmark", "bench", "--method", unit.method, "--preset", session.preset,
               "--results-dir", str(ctx.results_dir), "--runs-dir", str(ctx.runs_dir), "--no-leaderboard"]
    if unit.kind == "ssl":
        command.append("--no-baselines")
        if settings.start:
            command += ["--start", settings.start]
    for name in settings.protocols or []:
        command += ["--protocol", name]
    if settings.cache_dir:
        command += ["--cache-dir", str(settings.cache_dir)]
    limit = None
    if deadline is not None:
        # The bench stops starting jobs by itself before `left - margin`; the hard stop comes after.
        command += ["--time-limit", f"{max(1.0, deadline.left() - settings.margin):.0f}s"]
        limit = max(1.0, deadline.left() - INTERRUPT_GRACE_S)  # SIGINT, then SIGKILL by the deadline
    todo = len(unit.planned) - unit.done
    _say(f"session: {unit.init}: {todo} jobs to run" + (" (pretraining first)" if unit.kind == "ssl" else "")
         + (f", {deadline.left():.0f} s left" if deadline else "") + " …")
    log = session.out / "logs" / f"bench-{unit.init}.log"
    code, unit.seconds = run_step(command, log, limit)
    unit.log = str(log.relative_to(session.out))
    unit.done = count_done(unit.planned, ctx)
    if code == 0 and unit.done == len(unit.planned):
        unit.status = "complete"
    elif code in (TIME_LIMIT_EXIT, None, 130):
        unit.status = "partial" if unit.done > unit.done_before else "stopped"
        unit.note = "time limit"
    else:
        unit.status = "failed"
        unit.note = f"exit status {code}: {last_error_line(log.read_text(errors='replace'))}"
    session.steps.append({"step": f"bench {unit.init}", "command": shlex.join(command), "exit": code,
                          "seconds": round(unit.seconds, 1)})
    _say(f"session: {unit.init}: {unit.status}, {unit.done} of {len(unit.planned)} jobs done "
         f"({unit.seconds:.0f} s){'; ' + unit.note if unit.note else ''}")


def _keep_checkpoints(session: Session, runs_dir: Path) -> list[str]:
    """Copy the finished checkpoints of methods with jobs left into OUT/runs, for the next session."""
    kept = []
    for unit in session.units:
        if unit.kind != "ssl" or unit.done == len(unit.planned):
            continue
        finals = sorted((runs_dir / "pretrain" / session.track).glob(f"{unit.init}-*/encoder.safetensors"),
                        key=lambda p: p.stat().st_mtime)
        if not finals:
            continue
        folder = finals[-1].parent
        rel = folder.relative_to(runs_dir)
        dest = session.out / "runs" / rel
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("encoder.safetensors", "config.json"):
            if (folder / name).exists():
                shutil.copy2(folder / name, dest / name)
        kept.append(str(Path("runs") / rel))
    return kept


# --------------------------------------------------------------------------------- the summary

def _write_summary(session: Session, code: int, deadline) -> None:
    from tabulate import tabulate

    # From the start of the process when there is a time limit (its clock starts there).
    elapsed = deadline.length - deadline.left() if deadline else time.monotonic() - session.started
    planned = sum(len(u.planned) for u in session.units)
    done = sum(u.done for u in session.units)
    new = sum(u.done - u.done_before for u in session.units)
    outcome = {0: "every planned job is done", TIME_LIMIT_EXIT: "time ran out with jobs left",
               EXIT_FAILED: "a step failed"}[code]
    rows = [[u.init, u.kind, u.status, f"{u.done} / {len(u.planned)}",
             "—" if u.seconds is None else f"{u.seconds:.0f}", u.log or "—", u.note] for u in session.units]
    lines = [f"# sslbench session: {session.track}", "",
             f"{done} of {planned} jobs of the track done ({new} in this session); {elapsed:.0f} s"
             + (f" of a {deadline.length:.0f} s limit" if deadline else "") + f"; {outcome}.", ""]
    if session.doctor is not None:
        table = session.doctor.get("table")
        lines += [f"Device check: {session.doctor['status']}"
                  + (f" — table in `{table}`, log in `{session.doctor['log']}`" if table else ""), ""]
    if session.not_run:
        lines += [f"No grid step ran: {session.not_run}.", ""]
    lines += [tabulate(rows, headers=["init", "kind", "status", "jobs done / planned", "s", "log", "note"],
                       tablefmt="github", disable_numparse=True), ""]
    lines += ["Results: `results/` (copy into leaderboard/results, then `make leaderboard`)."]
    if session.kept_checkpoints:
        lines += ["Checkpoints of methods with jobs left (put them in the next session's runs folder, so "
                  "their jobs keep their keys): " + ", ".join(f"`{k}`" for k in session.kept_checkpoints)]
    text = "\n".join(lines) + "\n"
    (session.out / "SESSION.md").write_text(text)
    (session.out / "session.json").write_text(json.dumps({
        "track": session.track, "preset": session.preset, "exit": code, "outcome": outcome,
        "seconds": round(elapsed, 1), "jobs_planned": planned, "jobs_done": done, "jobs_new": new,
        "doctor": session.doctor, "units": [{**asdict(u), "planned": len(u.planned)} for u in session.units],
        "kept_checkpoints": session.kept_checkpoints, "not_run": session.not_run, "steps": session.steps}, indent=1, default=str) + "\n")
    _say(text)


def _say(text: str) -> None:
    print(text, flush=True)

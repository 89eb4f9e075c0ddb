"""Run one `sslbench` step as a child process: in its own process group, its output in a log file,
interrupted (as Ctrl-C: finished work is kept) and then killed when it runs past its time. The
session and the doctor's DDP launch run their steps this way, so a crash or a hang is recorded and
the next step still runs."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from benchmark.folders import REPO_ROOT


def child_env(**extra: str) -> dict[str, str]:
    """The environment of an `sslbench` subprocess: this checkout first on the import path (so the
    child runs the same code, installed or not), unbuffered output for its log."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **extra}


def last_error_line(output: str) -> str:
    """The line of a command's output that says what went wrong: our own error line, else the last
    error line that is not a launcher's wrapper around its child's (torchrun's ChildFailedError),
    else the last line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    ours = [ln for ln in lines if ln.startswith("sslbench: error:")]
    errors = [ln for ln in lines if ("Error" in ln or "error:" in ln) and "ChildFailedError" not in ln]
    found = ours or errors or lines
    return found[-1][:300] if found else "no output"


INTERRUPT_GRACE_S = 20.0  # after SIGINT, before SIGKILL


def run_step(command: list[str], log: Path, limit_s: float | None,
             env: dict[str, str] | None = None) -> tuple[int | None, float]:
    """Run `command` (in its own process group: launchers such as torchrun have children) with its
    output in `log`; past `limit_s` the group is interrupted (SIGINT, as Ctrl-C: finished work is
    kept), then killed. Returns (exit status, or None if it was stopped; seconds)."""
    started = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        handle.write(f"$ {shlex.join(command)}\n")
        handle.flush()
        proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env or child_env(),
                                start_new_session=True)
        try:
            code = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGINT)
            try:
                proc.wait(timeout=INTERRUPT_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            code = None
        finally:
            if proc.poll() is None:  # this process was interrupted
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
    return code, time.monotonic() - started


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass

"""The `sslbench` command line.

Each subcommand lives in its own module of this package and exposes
`register(subparsers)`; the module list below is the only place that names them.
Subcommand modules import heavy libraries (torch, lightning) inside their handlers so that
`sslbench --help` and `sslbench leaderboard` start fast and never pull in torch.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import signal
import sys
import threading

from benchmark.errors import Terminated, UserError
from leaderboard.errors import ResultsError

# Order = order shown in `sslbench --help`.
COMMANDS = [
    "bench",
    "data",
    "methods",
    "pretrain",
    "evaluate",
    "run",
    "ablation",
    "export",
    "embed",
    "leaderboard",
    "validate",
    "doctor",
    "session",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sslbench",
        description="Benchmark self-supervised pretraining on ultrasound video "
        "(fetal cardiac plane classification with few labels).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"benchmark.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before torch loads (subcommands import it lazily): OpenMP threads that spin while waiting slowed
    # a CPU fine-tune step ~20× on a loaded 2-core machine (measured 2 vs 38 img/s); sleeping waiters
    # cost nothing measurable when the machine is idle. The user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    with _sigterm_as_interrupt():
        try:
            return int(args.func(args) or 0)
        except (UserError, ResultsError) as exc:
            print(f"sslbench: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, Terminated)
            command = shlex.join(["sslbench", *(sys.argv[1:] if argv is None else argv)])
            print(f"sslbench: {'stopped by SIGTERM' if terminated else 'interrupted'}; finished work is kept. "
                  f"To resume, run the same command again:\n  {command}", file=sys.stderr, flush=True)
            return 128 + signal.SIGTERM if terminated else 130


class _sigterm_as_interrupt:
    """While a command runs, SIGTERM (how SLURM preempts, how `timeout` stops) raises Terminated, a
    KeyboardInterrupt, so it stops the run as Ctrl-C does: checkpoints and results are written
    atomically, and the message says how to resume. During pretraining Lightning chains this handler
    after its own. Only in the main thread (signal handlers can be set nowhere else)."""

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, _terminate)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _terminate(signum, frame) -> None:
    raise Terminated

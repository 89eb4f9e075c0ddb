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
import sys

from benchmark.errors import UserError
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
    try:
        return int(args.func(args) or 0)
    except (UserError, ResultsError) as exc:
        print(f"sslbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sslbench: interrupted; finished work is kept, run the same command again to resume.",
              file=sys.stderr)
        return 130

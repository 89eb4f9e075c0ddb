"""`sslbench doctor`: run every device path of the engine for a few steps and print one table
(benchmark.doctor)."""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.doctor import CHECKS


def register(sub) -> None:
    p = sub.add_parser(
        "doctor", help="check every device path (GPU cache, pinned gather, bf16, compile, DDP, protocols)",
        description="Run each device path of the engine for a few steps at a small size — pretraining "
                    "with the GPU-resident cache and with the pinned-buffer gather, fp32 and bf16, eager "
                    "and compiled, a one-process DDP launch through torchrun, fine-tuning, feature "
                    "extraction and the linear probe — and print one table: ok/failed/skipped, views/s, "
                    "and end-to-end / model-only step for pretraining. Without a GPU it runs the CPU "
                    "paths and lists the GPU rows as skipped. Exit status 1 when a row failed.")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="also write the table as DIR/doctor.md and DIR/doctor.json, and the DDP launch's log")
    p.add_argument("--only", action="append", default=None, metavar="ROW",
                   help=f"run only this row (repeatable): {', '.join(c.id for c in CHECKS)}")
    p.add_argument("--backbone", default=None,
                   help="backbone of the pretraining rows (default: the standard preset's on a GPU)")
    p.add_argument("--resolution", type=int, default=None, help="view size in pixels (GPU default: standard's)")
    p.add_argument("--batch-size", type=int, default=None, help="pretraining batch per device")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per pretraining row")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="keep caches, runs and logs here (default: a temporary folder, removed at the end)")
    p.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from benchmark.doctor import run_doctor

    sizes = {"backbone": args.backbone, "resolution": args.resolution, "batch_size": args.batch_size,
             "steps": args.steps}
    return run_doctor(args.only, sizes, out=args.out, work_dir=args.work_dir)

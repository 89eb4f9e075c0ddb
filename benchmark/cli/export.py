"""`sslbench export`: a pretrained encoder as ONNX, TorchScript or safetensors with its model card
(benchmark.export)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.cli.common import add_cache_argument, add_start_argument


def register(sub) -> None:
    from benchmark.export import FORMATS

    p = sub.add_parser(
        "export", help="export a pretrained encoder (ONNX, TorchScript, safetensors) with a model card",
        description="Write an encoder for use outside the benchmark, and MODEL_CARD.md beside it: the method, "
                    "its resolved hyper-parameters, pretraining data and budget, the input contract, the "
                    "leaderboard rows of the checkpoint (when results exist) and the licence of the weights "
                    "pretraining started from. ONNX and TorchScript files are checked against PyTorch.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", type=Path, help="an encoder checkpoint (encoder.safetensors)")
    which.add_argument("--method", help="the checkpoint `sslbench bench` made for this method on --preset's track")
    p.add_argument("--preset", default="auto", help="with --method: the track (smoke | cpu | cpu-v3 | real | standard | paper | a .toml)")
    p.add_argument("--pretrain-seed", type=int, default=0, help="with --method: which pretraining run (default 0)")
    add_start_argument(p)
    p.add_argument("--format", choices=FORMATS, default="onnx", help="file format (default: onnx)")
    p.add_argument("--out", type=Path, required=True, help="folder to write the encoder and MODEL_CARD.md into")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="result files to take the leaderboard rows from (default: leaderboard/results "
                        "or $SSLBENCH_RESULTS_DIR)")
    p.add_argument("--runs-dir", type=Path, default=None, help="with --method: the runs folder (default: runs/)")
    add_cache_argument(p)
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from benchmark import export

    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = export.method_checkpoint(args.method, args.preset, args.pretrain_seed, runs_dir=args.runs_dir,
                                              cache_dir=args.cache_dir, results_dir=args.results_dir, start=args.start)
    done = export.export(checkpoint, args.format, args.out, results_dir=args.results_dir)
    check = "" if done.max_abs_diff is None else f" (max abs difference from PyTorch {done.max_abs_diff:.2e})"
    print(f"exported {checkpoint} → {done.path}{check}; model card {done.card}", file=sys.stderr)
    return 0

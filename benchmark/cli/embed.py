"""`sslbench embed`: features of any dataset by a pretrained encoder, as a Parquet table
(benchmark.export.embed)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.cli.common import add_dataset_arguments, dataset_options


def register(sub) -> None:
    p = sub.add_parser(
        "embed", help="extract features of a dataset with a pretrained encoder into a Parquet file",
        description="Decode the dataset into the frame cache (at the checkpoint's resolution) and write one row "
                    "per frame: frame_id, video_id, frame_idx, subject_id, label (where known), split and the "
                    "feature vector, extracted exactly as the protocols extract them.")
    p.add_argument("--checkpoint", type=Path, required=True, help="an encoder checkpoint (encoder.safetensors)")
    p.add_argument("--out", type=Path, required=True, help="the .parquet file to write")
    p.add_argument("--role", choices=["downstream", "pretrain"], default=None,
                   help="which part of the dataset: the labelled downstream set or the pretraining pool "
                        "(default: downstream when the source has labels)")
    p.add_argument("--batch-size", type=int, default=256, help="extraction batch (does not change the features)")
    add_dataset_arguments(p, default=None)
    p.set_defaults(func=_embed)


def _embed(args: argparse.Namespace) -> int:
    from benchmark.checkpoint import read_meta
    from benchmark.data.spec import parse_dataset_spec
    from benchmark.errors import UserError
    from benchmark.export import embed

    if not args.dataset:
        raise UserError("sslbench embed needs --dataset SPEC (e.g. synthetic, imagefolder:DIR, videos:DIR)")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    opts = dataset_options(args)
    if opts.get("resolution") is None:  # the frames at the size the encoder was pretrained on
        opts["resolution"] = read_meta(args.checkpoint).get("resolution")
    source = parse_dataset_spec(args.dataset, **opts)
    out = embed(args.checkpoint, source, args.out, role=args.role, cache_dir=args.cache_dir,
                batch_size=args.batch_size, on_error=args.on_error)
    print(f"features: {out}", file=sys.stderr)
    return 0

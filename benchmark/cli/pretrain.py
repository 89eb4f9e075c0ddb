"""`sslbench pretrain`: pretrain one SSL method on a dataset's frame cache (resumable, keyed)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmark.cli.common import add_dataset_arguments, dataset_options, parse_value
from benchmark.errors import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "pretrain", help="pretrain an SSL method on a dataset (GPU-batched augmentation, resumable)",
        description="Pretrain METHOD on the pretraining frames of a dataset and write its encoder "
                    "checkpoint. Settings come from the method's defaults, then the preset's [pretrain] "
                    "table, then the flags. A finished run (same settings and data) is not redone; a "
                    "killed run resumes from its last checkpoint.")
    p.add_argument("--method", required=True, help="SSL method (see `sslbench methods`)")
    p.add_argument("--preset", default=None,
                   help="smoke | cpu | cpu-v3 | real | standard | paper | auto | a preset .toml: its pretraining data and "
                        "[pretrain] settings (flags override them)")
    add_dataset_arguments(p, default=None)
    p.add_argument("--backbone", default=None, help="resnet18 | resnet50 | efficientnet_lite0")
    p.add_argument("--start", "--init", dest="init", choices=["random", "imagenet"], default=None,
                   help="start from random or ImageNet weights (default: the preset's [pretrain] start, else "
                        "random); from ImageNet weights the preset's [pretrain.continued] recipe applies")
    p.add_argument("--steps", type=int, default=None,
                   help="the budget in optimizer steps (default: the preset's; the same for every method "
                        "and any data size)")
    p.add_argument("--batch-size", type=int, default=None, help="per device (default: the method's)")
    p.add_argument("--limit-frames", type=int, default=None, help="pretrain on at most N frames (evenly spaced)")
    p.add_argument("--positives", default=None, metavar="same_frame|temporal:K",
                   help="positive pairs: two augmentations of one frame (default) or two frames at most "
                        "K frame numbers apart in one video")
    p.add_argument("--set", dest="hparams", action="append", default=[], metavar="KEY=VALUE",
                   help="override a method hyper-parameter, e.g. --set lr=0.1 (see `sslbench methods M`)")
    p.add_argument("--augment", action="append", default=[], metavar="KEY=VALUE",
                   help="override an augmentation strength for both views (blur_p=0.5) or one "
                        "(view2.solarize_p=0); see benchmark/augment.py")
    p.add_argument("--precision", default=None, help="auto (bf16-mixed on GPU, 32 on CPU) | 32 | bf16-mixed")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model step")
    p.add_argument("--devices", default=None, help="GPUs per node: auto | N (several → DDP)")
    p.add_argument("--num-nodes", type=int, default=None, help="nodes for DDP (torchrun / SLURM)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue a killed run from its last checkpoint (default) or start it over")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="folder of pretraining runs (default: $SSLBENCH_RUNS_DIR/pretrain or runs/pretrain)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                   help="save the training state every N steps for resume (default 100)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_pretrain)


def _key_values(items: list[str], flag: str) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} expects KEY=VALUE, got {item!r}")
        value = value.strip()
        if value.startswith("["):  # ranges such as crop_scale=[0.5,1.0]
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                raise UserError(f"{flag} {item!r}: {value!r} is not a list like [0.5, 1.0]") from exc
        else:
            parsed = parse_value(value)
        out[key.strip()] = parsed
    return out


def build_config(args: argparse.Namespace):
    """(PretrainConfig, dataset spec, source options) from preset + flags."""
    from benchmark.pretrain.config import PretrainConfig

    values: dict = {}
    spec, options = "synthetic", {}
    if args.preset:
        from protocols.presets import load_preset, pretrain_settings, resolve_preset

        preset = load_preset(resolve_preset(args.preset))
        values.update(pretrain_settings(preset, args.method, args.init))
        spec = preset["data"]["pretrain"]["spec"]
        options = dict(preset["data"]["pretrain"].get("options", {}))
        options["resolution"] = preset["resolution"]
    flags = {"backbone": args.backbone, "init": args.init, "steps": args.steps, "batch_size": args.batch_size,
             "limit_frames": args.limit_frames, "positives": args.positives,
             "precision": args.precision, "compile": args.compile, "num_nodes": args.num_nodes,
             "seed": args.seed, "devices": parse_value(args.devices) if args.devices else None}
    values.update({k: v for k, v in flags.items() if v is not None})
    values["hparams"] = {**values.get("hparams", {}), **_key_values(args.hparams, "--set")}
    values["augment"] = {**values.get("augment", {}), **_key_values(args.augment, "--augment")}
    if args.dataset is not None:
        spec, options = args.dataset, {}
    options.update({k: v for k, v in dataset_options(args).items() if v is not None})
    if args.resolution is not None:
        values["resolution"] = args.resolution  # one resolution: the cached frames and the views
    options.setdefault("resolution", values.get("resolution", PretrainConfig.resolution))
    return PretrainConfig.from_dict({"method": args.method, **values}).validate(), spec, options


def _pretrain(args: argparse.Namespace) -> int:
    cfg, spec, options = build_config(args)
    from methods.registry import get_method

    get_method(cfg.method)  # an unknown name fails before any data work
    from benchmark.data.cache import prepare, say_skipped
    from benchmark.data.spec import parse_dataset_spec
    from benchmark.folders import default_runs_dir
    from benchmark.pretrain.run import CHECKPOINT_EVERY_STEPS, pretrain

    source = parse_dataset_spec(spec, flags=dataset_options(args, with_flags=True)[1], **options)
    pool = say_skipped(prepare(source, "pretrain", cache_dir=args.cache_dir, on_error=args.on_error,
                               progress=not args.quiet))
    run_dir = args.run_dir or default_runs_dir() / "pretrain"
    every = args.checkpoint_every or CHECKPOINT_EVERY_STEPS
    if every < 1:
        raise UserError(f"--checkpoint-every must be >= 1, got {every}")
    final = pretrain(cfg, pool, run_dir, resume=args.resume, progress=not args.quiet, checkpoint_every=every)
    print(final)
    print(f"encoder checkpoint: {final}", file=sys.stderr)
    return 0

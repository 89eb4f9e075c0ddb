"""`sslbench ablation variance-vs-size`: does a diverse pretraining video set beat a merely larger one?
(benchmark.track.variance_vs_size); `sslbench ablation learning-curve`: how far does each method get at
several pretraining budgets? (benchmark.track.learning_curve); `sslbench ablation positives`: does the
video's time help, as positive pairs? (benchmark.track.positives); `sslbench ablation continued-recipe`: which
recipe should continue ImageNet's weights? (benchmark.track.continued_recipe); `sslbench ablation
cross-scanner`."""
from __future__ import annotations

import argparse

from benchmark.cli.common import add_start_argument, add_track_arguments, track_context_from_args


def register(sub) -> None:
    p = sub.add_parser("ablation", help="run an ablation protocol (variance-vs-size, learning-curve, positives, continued-recipe, cross-scanner)",
                       description="Ablations of the pretraining data and budget, run with the same job keys, "
                                   "resume and sharding as the main grid; results go to the results folder and "
                                   "`sslbench leaderboard` adds their section.")
    asub = p.add_subparsers(dest="ablation", metavar="ABLATION")
    asub.required = True
    v = asub.add_parser(
        "variance-vs-size", help="pretraining subsets: few vs many subjects at equal frames, and growing frames",
        description="Draw pretraining subsets from the pool along two axes (protocols/variance_vs_size.toml): "
                    "diversity (few → many subjects at a fixed frame budget) and size (a growing frame budget "
                    "at fixed subjects); pretrain each for the same number of steps and evaluate it with the "
                    "linear probe and fine-tuning at 1 %% labels over the protocol's seeds. With --shard i/N "
                    "each shard takes every N-th (method, subset, pretraining seed) unit: its pretraining and its "
                    "evaluations.")
    v.add_argument("--method", default=None,
                   help="SSL method(s), comma-separated (default: the protocol's, barlowtwins and simclr)")
    add_track_arguments(v)
    add_start_argument(v)
    v.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the leaderboard at the end")
    v.set_defaults(func=_variance_vs_size)
    c = asub.add_parser(
        "learning-curve", help="each method pretrained at several budgets (steps), evaluated at one label fraction",
        description="Pretrain each method on the whole pool for every budget of protocols/learning_curve.toml "
                    "(150, 300, 600, 1200 steps by default; each budget a run of its own with the preset's "
                    "pretraining settings and its own schedule; a budget equal to the preset's is the main grid's "
                    "checkpoint), then evaluate each checkpoint with the protocol's evaluation protocols at its "
                    "label fraction over its seeds (the linear probe at 10 %% labels, 5 seeds, by default). With "
                    "--shard i/N each shard takes every N-th (method, budget, pretraining seed) unit, largest "
                    "budgets first: its pretraining and its evaluations.")
    c.add_argument("--method", default=None,
                   help="SSL method(s), comma-separated, or `all` (default: the protocol's, all seven)")
    add_track_arguments(c)
    add_start_argument(c)
    c.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the leaderboard at the end")
    c.set_defaults(func=_learning_curve)
    q = asub.add_parser(
        "positives", help="each method pretrained with each way of drawing positive pairs (same frame, temporal)",
        description="Pretrain each method with every positives mode of protocols/positives.toml (two augmentations "
                    "of one frame, `same_frame`, or two frames of one clip at most K apart, `temporal:K`), the rest "
                    "as the preset sets it (a mode equal to the preset's is the main grid's checkpoint), then "
                    "evaluate each checkpoint with the protocol's evaluation protocols at its label fractions over "
                    "its seeds and pretraining seeds (the linear probe at 1 and 10 %% labels, 5 seeds, 3 pretraining "
                    "runs, by default). The leaderboard pairs each mode with the reference mode's runs of the same "
                    "seeds: Δ, 95 %% interval over the pretraining runs, Holm-corrected p. With --shard i/N each "
                    "shard takes every N-th (method, mode, pretraining seed) unit: its pretraining and its "
                    "evaluations.")
    q.add_argument("--method", default=None,
                   help="SSL method(s), comma-separated, or `all` (default: the protocol's, simclr and vicreg)")
    add_track_arguments(q)
    add_start_argument(q)
    q.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the leaderboard at the end")
    q.set_defaults(func=_positives)
    r = asub.add_parser(
        "continued-recipe", help="each method continued from ImageNet with every candidate recipe, to choose one",
        description="Continue each method from ImageNet's weights with every candidate recipe of "
                    "protocols/continued_recipe.toml (its knobs in place of the preset's [pretrain.continued] "
                    "table; a candidate equal to it is the main grid's checkpoint), then evaluate each checkpoint "
                    "with the protocol's evaluation protocols at its label fraction over its seeds (the linear "
                    "probe at 10 %% labels, 5 seeds, by default). The leaderboard's section chooses the recipe "
                    "with the highest validation macro-F1 averaged over the methods; the test split is never "
                    "read to choose. With --shard i/N each shard takes every N-th (method, recipe, pretraining "
                    "seed) unit: its pretraining and its evaluations.")
    r.add_argument("--method", default=None,
                   help="SSL method(s), comma-separated, or `all` (default: the protocol's, all seven)")
    add_track_arguments(r)
    r.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the leaderboard at the end")
    r.set_defaults(func=_continued_recipe)
    x = asub.add_parser(
        "cross-scanner", help="leave one scanner out: train on the other scanners, test on the held-out one",
        description="For each scanner of the downstream data (protocols/cross_scanner.toml), evaluate METHOD and "
                    "the baselines with each evaluation protocol of its eval_protocols (linear_probe, knn and "
                    "finetune; --protocol NAME: only that one) trained on the other scanners' images at every label "
                    "fraction and seed, selected on their validation images, and tested on the held-out scanner's "
                    "test images and on the training scanners' own (in-scanner) with the same model. Scanners "
                    "(for the African fetal planes: countries) come from the data; "
                    "the simulator spreads its downstream images over N machines with -O scanners=N (the preset's "
                    "[data.cross_scanner] table may set it). Data with fewer than 2 scanners skip the protocol. "
                    "METHOD is pretrained first where its checkpoint is missing.")
    x.add_argument("--method", required=True,
                   help="SSL method(s), comma-separated, `all`, `imagenet` or `random` (as for `sslbench bench`)")
    add_track_arguments(x)
    add_start_argument(x)
    x.add_argument("--no-baselines", action="store_true", help="leave out the imagenet and random baselines")
    x.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the leaderboard at the end")
    x.set_defaults(func=_cross_scanner)


def _pretraining_ablation(name: str):
    """The command of an ablation that pretrains SSL methods: `benchmark.track.<name>` on the track the
    arguments name, with their methods, protocols, shard and time limit."""
    def run(args: argparse.Namespace) -> int:
        from benchmark import track
        from benchmark.runner import TIME_LIMIT_EXIT, parse_shard

        shard = parse_shard(args.shard)
        ctx = track_context_from_args(args)
        stopped = getattr(track, name)(ctx, args.method, args.protocol, force=args.force, shard=shard,
                                       deadline=args.time_limit, leaderboard=not args.no_leaderboard)
        return TIME_LIMIT_EXIT if stopped else 0

    return run


_variance_vs_size = _pretraining_ablation("variance_vs_size")
_learning_curve = _pretraining_ablation("learning_curve")
_positives = _pretraining_ablation("positives")
_continued_recipe = _pretraining_ablation("continued_recipe")


def _cross_scanner(args: argparse.Namespace) -> int:
    from benchmark import track
    from benchmark.runner import TIME_LIMIT_EXIT, parse_shard
    from protocols.cross_scanner import NAME

    methods, baselines = track.parse_methods(args.method, baselines=not args.no_baselines)
    shard = parse_shard(args.shard)
    ctx = track_context_from_args(args, need_pretrain_data=bool(methods) or "random" in baselines, data_table=NAME)
    stopped = track.cross_scanner(ctx, methods, baselines, force=args.force, shard=shard, deadline=args.time_limit,
                                  leaderboard=not args.no_leaderboard, protocols=args.protocol)
    return TIME_LIMIT_EXIT if stopped else 0

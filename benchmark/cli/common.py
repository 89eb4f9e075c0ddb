"""Arguments shared by several subcommands (dataset selection, cache, error policy, a track and its
grid, durations), and what they become as library arguments."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from benchmark.errors import UserError
from benchmark.runner import TIME_LIMIT_EXIT

# Source settings with their own flag; any other source setting goes through --option KEY=VALUE.
# Each maps to the dataclass field of the same name on the sources that have it.
SOURCE_FLAGS = {
    "resolution": dict(type=int, help="frame size in pixels (square) stored in the cache"),
    "stride": dict(type=int, help="keep every N-th frame of each video"),
    "max_frames": dict(type=int, help="keep at most N frames per video"),
    "crop": dict(choices=["auto", "none"], help="crop to the region that varies across a clip "
                 "(drops static overlays, text, borders) or keep the whole frame"),
    "label_column": dict(help="column holding the class (FETAL_PLANES_DB: Plane or Brain_plane)"),
    "subject_pattern": dict(help="regular expression whose first group, matched against a file's "
                            "path, gives its subject id (default: the sub-folder)"),
    "labels": dict(help="label manifest (CSV: path,label[,subject][,split]) for DICOM files"),
}


def parse_value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def add_dataset_arguments(parser: argparse.ArgumentParser, *, default: str | None = "synthetic",
                          flag: str = "--dataset") -> None:
    parser.add_argument(flag, dest="dataset", default=default, metavar="SPEC",
                        help="data source: synthetic | videos:DIR | dicom:DIR | hdf5:FILE | echonet:DIR | "
                             "fetal_planes_db:DIR | african_fetal_planes:DIR | imagefolder:DIR | csv:FILE | hf:NAME_OR_DIR "
                             f"(default: {default})")
    for name, kw in SOURCE_FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None, **kw)
    parser.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="any other source setting, e.g. -o subjects=40 -o noise=0.5 for the simulator")
    add_on_error_argument(parser, "--on-error")
    add_cache_argument(parser)


def add_on_error_argument(parser: argparse.ArgumentParser, flag: str, default: str | None = "fail",
                          what: str = "") -> None:
    parser.add_argument(flag, choices=["fail", "skip"], default=default,
                        help=f"on an unreadable file{what}: stop with its name (fail, default) or leave it "
                             "out, say how many, and list them in skipped.csv beside the cache (skip)")


def add_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", default=None,
                        help="frame cache folder (default: $SSLBENCH_CACHE_DIR or ~/.cache/sslbench)")


def add_track_arguments(p: argparse.ArgumentParser, *, grid: bool = True) -> None:
    p.add_argument("--preset", default="auto",
                   help="smoke | cpu | cpu-v3 | real | standard | paper | auto (standard on a GPU, smoke on a CPU) | a preset .toml")
    p.add_argument("--dataset", default=None, metavar="SPEC",
                   help="pretraining data instead of the preset's (e.g. videos:/data/clips, or downstream:train: the "
                        "downstream data's train split, unlabelled); also the "
                        "downstream data when the source has labels, unless --downstream is given")
    p.add_argument("--downstream", default=None, metavar="SPEC",
                   help="labelled downstream data instead of the preset's (e.g. fetal_planes_db:/data/fpdb)")
    p.add_argument("--track", dest="track_name", default=None, metavar="NAME",
                   help="name the track NAME instead of after its data, backbone, resolution and preset")
    for name, kw in SOURCE_FLAGS.items():
        if name != "resolution":  # the preset's: it is part of the track
            p.add_argument("--" + name.replace("_", "-"), dest=name, default=None,
                           **{**kw, "help": kw["help"] + " (pretraining source; downstream: -O " + name + "=...)"})
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting of the pretraining source (--dataset; also its downstream "
                        "role when it serves both), e.g. -o workers=4")
    add_on_error_argument(p, "--on-error", what=" of the pretraining source")
    p.add_argument("--downstream-option", "-O", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the downstream source (--downstream), e.g. -O label_column=Brain_plane")
    add_on_error_argument(p, "--downstream-on-error", default=None,
                          what=" of the downstream source (default: fail, or --on-error when one "
                               "source serves both roles)")
    p.add_argument("--protocol", action="append", default=None, metavar="NAME",
                   help="run only this protocol (linear_probe, finetune, knn; repeatable; default: all)")
    if grid:
        p.add_argument("--force", action="store_true", help="rerun jobs whose results exist")
        p.add_argument("--shard", default=None, metavar="i/N",
                       help="run every N-th job starting at i (0 <= i < N), for SLURM arrays or any "
                            "scheduler; all shards write into one results folder")
        p.add_argument("--time-limit", type=time_limit, default=None, metavar="DURATION",
                       help="e.g. 50m, 1h30m, 600: start no pretraining or job that is not expected to "
                            "end within this time from now (expected = the longest so far), then exit "
                            f"with status {TIME_LIMIT_EXIT}; finished work is kept, the same command continues")
        p.add_argument("--replace-reference", action="store_true",
                       help="write over committed results whose job keys differ from this run's (another "
                            "machine's arithmetic, other inputs); without it such results go to RUNS/results "
                            "and the command ends with a reproduction report")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="where result files go (default: leaderboard/results or $SSLBENCH_RESULTS_DIR)")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="pretraining runs, cached features and fine-tune states "
                        "(default: runs/ or $SSLBENCH_RUNS_DIR)")
    add_cache_argument(p)


def add_start_argument(p: argparse.ArgumentParser, *flags: str) -> None:
    """`--start`: where the SSL methods' pretraining starts (leaderboard.results.STARTS)."""
    from leaderboard.results import STARTS

    p.add_argument("--start", *flags, dest="start", choices=list(STARTS), default=None,
                   help="pretrain the SSL methods from random weights or continue from the backbone's ImageNet "
                        "weights: rows of their own (METHOD@imagenet, shown `METHOD ← imagenet`) with the "
                        "preset's [pretrain.continued] recipe (default: the preset's [pretrain] start, else random)")


def track_context_from_args(args: argparse.Namespace, *, need_pretrain_data: bool = True,
                            data_table: str | None = None, new_results: bool = True):
    """The track that the arguments of `add_track_arguments` name (benchmark.track.track_context);
    `data_table`: the ablation whose `[data.<name>]` preset table adds downstream settings."""
    from benchmark.track import SourceSettings, track_context

    pre_opts, pre_flags = dataset_options(args, with_flags=True)
    down_opts, down_flags = key_value_options(args.downstream_option, "-O")
    return track_context(args.preset, dataset=args.dataset, downstream=args.downstream,
                         pretrain=SourceSettings(pre_opts, pre_flags, args.on_error),
                         downstream_settings=SourceSettings(down_opts, down_flags, args.downstream_on_error),
                         protocols=args.protocol, results_dir=args.results_dir, runs_dir=args.runs_dir,
                         cache_dir=args.cache_dir, need_pretrain_data=need_pretrain_data,
                         track_name=args.track_name, data_table=data_table, new_results=new_results,
                         replace_reference=getattr(args, "replace_reference", False),
                         start=getattr(args, "start", None))


def dataset_options(args: argparse.Namespace, *, with_flags: bool = False):
    """The source settings given on the command line (named flags and -o KEY=VALUE), as keyword
    arguments for parse_dataset_spec; `with_flags`: also how each was given (setting → flag)."""
    opts = {name: getattr(args, name, None) for name in SOURCE_FLAGS if hasattr(args, name)}
    flags = {name: "--" + name.replace("_", "-") for name, v in opts.items() if v is not None}
    more, more_flags = key_value_options(getattr(args, "option", []) or [], "-o")
    opts.update(more)
    flags.update(more_flags)
    return (opts, flags) if with_flags else opts


def key_value_options(items: list[str], flag: str) -> tuple[dict, dict]:
    """`KEY=VALUE` items of `flag` → (settings, setting → how it was given)."""
    opts, flags = {}, {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} expects KEY=VALUE, got {item!r}")
        key = key.strip().replace("-", "_")
        opts[key] = parse_value(value.strip())
        flags[key] = f"{flag} {item}"
    return opts, flags


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([hms]?)")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}


def parse_duration(text: str) -> float:
    """`600`, `90s`, `15m`, `1h30m` → seconds (> 0)."""
    low = str(text).strip().lower()
    parts = _DURATION_PART.findall(low)
    rest = _DURATION_PART.sub("", low).strip()
    if not parts or rest or (len(parts) > 1 and any(unit == "" for _, unit in parts)):
        raise argparse.ArgumentTypeError(f"expects a duration such as 50m, 1h30m or 600 (seconds), got {text!r}")
    seconds = sum(float(n) * _SECONDS[unit] for n, unit in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expects a duration above zero, got {text!r}")
    return seconds


def time_limit(text: str):
    """argparse type of --time-limit: a `benchmark.runner.Deadline` counted from now (process start)."""
    from benchmark.runner import Deadline

    return Deadline.after(parse_duration(text))

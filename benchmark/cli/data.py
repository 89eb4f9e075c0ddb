"""`sslbench data …`: build the frame cache of a dataset, show what is in it, preview it."""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from benchmark.cli.common import (
    add_dataset_arguments,
    add_track_arguments,
    dataset_options,
    track_context_from_args,
)


def register(sub) -> None:
    p = sub.add_parser("data", help="prepare, inspect and preview datasets (the frame cache)",
                       description="Decode a data source once into the frame cache and inspect it.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True

    prep = dsub.add_parser("prepare", help="decode a dataset into the frame cache (reused when unchanged)",
                           description="Decode a dataset into the frame cache and print a summary. A "
                                       "second call with the same source and settings reuses the cache; "
                                       "a changed source or setting rebuilds it.")
    add_dataset_arguments(prep)
    prep.add_argument("--role", choices=["pretrain", "downstream", "both"], default="both",
                      help="which part to prepare: the unlabelled pretraining pool, the labelled "
                           "downstream set, or both where the source has both (default)")
    prep.add_argument("--rebuild", action="store_true", help="build again even if the cache exists")
    prep.set_defaults(func=_prepare)

    back = dsub.add_parser("backfill-cards", help="add data cards (or the fields older cards lack) to a track's results",
                           description="Rebuild (or reuse) the frame caches of a track and add each cache's "
                                       "data card to the track's results that record its fingerprint: the whole "
                                       "card where a result has none, the fields it lacks (such as the source's "
                                       "settings) where its card is older; fields a result records keep their "
                                       "values, and metrics and everything else in a result stay as they are. Give "
                                       "the preset, data and --track the results were made with, then run "
                                       "`sslbench leaderboard`.")
    add_track_arguments(back, grid=False)
    back.set_defaults(func=_backfill_cards)

    prev = dsub.add_parser("preview", help="write a PNG contact sheet and an animated GIF of a dataset",
                           description="Write preview images: a contact sheet with examples of every "
                                       "class from several subjects, and an animated GIF of a few videos.")
    add_dataset_arguments(prev)
    prev.add_argument("--out", required=True, type=Path, help="folder to write the PNG and GIF into")
    prev.set_defaults(func=_preview)

    down = dsub.add_parser(
        "download", help="fetch a public data set (hash-checked, resumable) and print the spec to use",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Fetch public real data once, before any benchmark runs: the data set's terms and citation are "
            "printed first, every file is checked against the hash its registry (or Zenodo) gives, and the "
            "--dataset/--downstream spec to use is printed last. A second run keeps what is already there and "
            "fetches the rest; a stopped run leaves nothing that looks complete.") + "\n\n" + _download_listing())
    down.add_argument("names", nargs="+", metavar="NAME", help="the data sets to fetch (listed above)")
    down.add_argument("--to", default=None, metavar="DIR",
                      help="put each data set in DIR/NAME (default: $SSLBENCH_DATA_DIR/NAME, else "
                           "~/.cache/sslbench/data/NAME)")
    down.add_argument("--source", default=None, metavar="github|zenodo",
                      help="where from, where a data set has several (default: the first listed above)")
    down.add_argument("--mirror", default=None, metavar="URL",
                      help="fetch from URL instead of raw.githubusercontent.com and zenodo.org: a server (a "
                           "cluster's proxy, or a folder served over HTTP) answering the same paths, e.g. "
                           "URL/Stroeber/covid19_ultrasound/<commit>/data/pocus_videos/convex/<file>, "
                           "URL/api/records/3904280 (the record's file list and checksums) and "
                           "URL/records/3904280/files/<file>. Hashes are checked as usual. Default: "
                           "$SSLBENCH_DATA_MIRROR; $SSLBENCH_GITHUB_URL or $SSLBENCH_ZENODO_URL replace one host")
    down.set_defaults(func=_download)


def _roles(source, wanted: str) -> list[str]:
    if wanted == "both":
        return list(source.roles)
    return [wanted]


def _prepare(args: argparse.Namespace) -> int:
    from benchmark.data.cache import prepare
    from benchmark.data.spec import parse_dataset_spec

    source = parse_dataset_spec(args.dataset, **_options(args))
    for role in _roles(source, args.role):
        cache = prepare(source, role, cache_dir=args.cache_dir, on_error=args.on_error, rebuild=args.rebuild)
        print(cache.summary())
        print()
    return 0


def _backfill_cards(args: argparse.Namespace) -> int:
    from benchmark.track import backfill_data_cards

    ctx = track_context_from_args(args, new_results=False)  # completes existing results' cards
    changed, seen = backfill_data_cards(ctx)
    print(f"{ctx.track.id}: data cards added or completed in {changed} of {seen} results in {ctx.results_dir / ctx.track.id}; "
          "regenerate the leaderboard with `sslbench leaderboard`")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from benchmark.data.cache import prepare, say_skipped
    from benchmark.data.preview import write_preview
    from benchmark.data.spec import parse_dataset_spec

    source = parse_dataset_spec(args.dataset, **_options(args))
    caches = {role: say_skipped(prepare(source, role, cache_dir=args.cache_dir, on_error=args.on_error))
              for role in source.roles}
    for path in write_preview(caches, args.out):
        print(f"wrote {path}")
    return 0


def _download_listing() -> str:
    from benchmark.data.download import listing  # reads a small TOML file; pooch loads only when downloading

    return listing()


def _download(args: argparse.Namespace) -> int:
    from benchmark.data.download import download

    download(args.names, args.to, source=args.source, mirror=args.mirror)
    return 0


def _options(args: argparse.Namespace) -> dict:
    """Source settings, and how each was given (for the error naming one the source does not take)."""
    opts, flags = dataset_options(args, with_flags=True)
    return {**opts, "flags": flags}

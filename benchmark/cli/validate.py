"""`sslbench validate PATH…`: check result files before they are submitted. Never imports torch."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("validate", help="check result files (schema, protocol hash, metrics, provenance, duplicates)",
                       description="Check result JSON files, or every *.json under folders: the result schema, "
                                   "a protocol hash equal to the current protocols/<name>.toml (or listed in "
                                   "protocols/retired/hashes.toml), metrics "
                                   "consistent with the confusion matrix, the folder layout, provenance, and "
                                   "no two files for one job. Prints one line per problem (file: field: what).")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="result files or folders")
    p.add_argument("--protocols", type=Path, default=None, metavar="DIR",
                   help="protocol specs whose hashes count as current (default: protocols/ of this repository)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from leaderboard.validate import validate_paths
    from protocols.spec import known_protocol_hashes, retired_protocol_hashes

    problems, n_files = validate_paths(args.paths, known_protocol_hashes(args.protocols),
                                       retired_protocol_hashes(args.protocols))
    for problem in problems:
        print(problem)
    if problems:
        n_bad = len({p.path for p in problems})
        print(f"{n_files} result files checked: {len(problems)} problem(s) in {n_bad} file(s)")
        return 1
    print(f"{n_files} result files checked: all valid")
    return 0

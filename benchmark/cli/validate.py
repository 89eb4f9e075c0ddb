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
    p.add_argument("--rekey", action="store_true",
                   help="first give results written before a track's replicate lists (fractions, seeds, "
                        "pretrain_seeds) left the job key today's key, so their jobs are not rerun; a file is "
                        "rewritten only when its stored key is exactly the one its record implies")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.rekey:
        _rekey(args.paths)
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


def _rekey(paths: list[Path]) -> None:
    from benchmark.errors import UserError
    from leaderboard.results import find_result_files, read_json
    from protocols.keys import rekey_results
    from protocols.presets import load_preset
    from protocols.spec import ABLATIONS

    files = find_result_files(paths)
    # Ablation records do not record the preset's overrides of the ablation: read them from the preset.
    ablation_overrides = {}
    for preset in {(read_json(f).get("track") or {}).get("preset") for f in files} - {None}:
        try:
            tables = load_preset(preset)["protocols"]
        except UserError:  # a preset file that is not here: its ablation records stay unmatched
            continue
        ablation_overrides.update({(preset, name): tables.get(name) or {} for name in ABLATIONS})
    outcome = rekey_results(files, ablation_overrides)
    print(f"--rekey: {len(outcome['rekeyed'])} result file(s) given today's job key, "
          f"{len(outcome['current'])} already had it, {len(outcome['unmatched'])} match neither scheme "
          "(left as they are: their jobs run again)")
    for path in outcome["unmatched"][:20]:
        print(f"  unmatched: {path}")

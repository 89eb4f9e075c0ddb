"""Job keys recomputed from result files: the committed results carry the keys their records imply,
and `sslbench validate --rekey` carries files of the earlier key scheme over without a guess."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmark.cli import main
from leaderboard.results import find_result_files, read_json
from protocols.keys import record_key, rekey_results
from protocols.presets import load_preset
from protocols.spec import ABLATIONS

RESULTS = Path(__file__).resolve().parents[2] / "leaderboard" / "results"


def _ablation_overrides(preset: str) -> dict:
    tables = load_preset(preset)["protocols"]
    return {(preset, name): tables.get(name) or {} for name in ABLATIONS}


def test_every_committed_result_carries_the_key_its_record_implies():
    # A change of the key's scheme that does not carry the committed results over would make every
    # `make bench` rerun their jobs: this is where it shows.
    files = find_result_files(RESULTS)
    records = [read_json(f) for f in files]
    overrides = {}
    for preset in {r["track"]["preset"] for r in records}:
        overrides.update(_ablation_overrides(preset))
    kinds = set()
    for path, record in zip(files, records, strict=True):
        ab = overrides.get((record["track"]["preset"], record["protocol"]["name"]))
        assert record_key(record, ab) == record["job"]["key"], path
        kinds.add("ablation" if record.get("ablation") else "scanner" if record.get("scanner") else "main")
    assert kinds == {"main", "ablation", "scanner"}  # all three kinds of record were checked


def _committed(protocol: str, track: str = "cpu", nth: int = 0) -> Path:
    """The nth committed result of `protocol` on `track` whose preset overrides its seeds."""
    return [p for p in sorted(RESULTS.glob(f"*-{track}/*/{protocol}/**/*.json"))
            if read_json(p)["train"].get("protocol_overrides", {}).get("seeds")][nth]


def test_rekey_carries_over_only_files_whose_key_is_exactly_the_earlier_scheme_s(tmp_path, capsys):
    sources = {"legacy": _committed("finetune"), "tampered": _committed("finetune", nth=1),
               "current": _committed("finetune", nth=2), "ablation": _committed("variance_vs_size", "smoke")}
    paths = {}
    for name, source in sources.items():
        record = read_json(source)
        ab = _ablation_overrides(record["track"]["preset"]).get((record["track"]["preset"], record["protocol"]["name"]))
        legacy = record_key(record, ab, legacy=True)
        assert legacy != record["job"]["key"]  # the seeds lists were in the earlier key
        if name in ("legacy", "ablation"):
            record["job"]["key"] = legacy
        elif name == "tampered":
            record["job"]["key"] = legacy[:-1] + ("0" if legacy[-1] != "0" else "1")
        paths[name] = tmp_path / "results" / source.relative_to(RESULTS)
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        paths[name].write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    before = {name: read_json(p) for name, p in paths.items()}

    outcome = rekey_results(find_result_files(tmp_path / "results"), _ablation_overrides("smoke") | _ablation_overrides("cpu"))
    assert sorted(outcome["rekeyed"]) == sorted([paths["legacy"], paths["ablation"]])
    assert outcome["current"] == [paths["current"]] and outcome["unmatched"] == [paths["tampered"]]
    for name in ("legacy", "ablation"):
        after = read_json(paths[name])
        assert after["job"]["key"] == read_json(sources[name])["job"]["key"]  # today's key, as the grid makes it
        assert {**after, "job": {**after["job"], "key": None}} == {**before[name], "job": {**before[name]["job"], "key": None}}
    assert read_json(paths["tampered"]) == before["tampered"]

    # The command: a second pass finds them current; the tampered file is named and left.
    shutil.copy(sources["legacy"], paths["legacy"])
    assert main(["validate", "--rekey", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "0 result file(s) given today's job key, 3 already had it, 1 match neither scheme" in out
    assert f"unmatched: {paths['tampered']}" in out and "4 result files checked: all valid" in out

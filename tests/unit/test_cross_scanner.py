"""Scanners end to end: the cache's scanner column, FETAL_PLANES_DB's US_Machine and a manifest's scanner
column, the simulator's scanners knob, the leave-one-scanner-out folds, and the leaderboard's section."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.cache import FrameCache, fingerprint, prepare
from benchmark.data.simulator.scanners import MACHINES
from benchmark.data.source import Clip, Source
from benchmark.data.spec import parse_dataset_spec
from benchmark.data.splits import label_fraction
from benchmark.errors import UserError
from leaderboard import render
from leaderboard.load import load_results
from leaderboard.results import IN_SCANNER_TEST
from leaderboard.validate import validate_paths
from protocols.cross_scanner import folds
from protocols.linear_probe import run_probe
from protocols.spec import load_protocol
from tests.unit.downstream_fakes import fake_downstream
from tests.unit.test_leaderboard import INITS, make_result, split_metrics, write_protocols
from tests.unit.test_sources_images import make_fetal_planes_db, write_image, write_rows

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ScannedSource(Source):
    """Two labelled images per subject, subject k on scanner `m{k % 2}`."""

    roles: tuple[str, ...] = ("downstream",)
    kind = "scanned"

    def fingerprint_parts(self, role):
        return {"scanned": True}

    def class_names(self, role):
        return ["a", "b"]

    def items(self, role):
        for k in range(6):
            yield Clip(frames=np.full((2, 8, 8), k, np.uint8), video_id=f"v{k}", subject_id=f"s{k}",
                       labels=np.array([0, 1]), scanner=f"m{k % 2}")


def test_scanner_column_survives_build_and_load_and_old_caches_read_unknown(tmp_path):
    cache = prepare(ScannedSource(resolution=8), "downstream", cache_dir=tmp_path, progress=False)
    again = FrameCache.load(cache.root)
    assert again.index.groupby("subject_id")["scanner"].first().to_dict() == {f"s{k}": f"m{k % 2}" for k in range(6)}
    assert again.scanners == ["m0", "m1"]
    # A cache written before the column existed loads, every scanner unknown (no scanner, not a scanner "").
    old = again.index.drop(columns="scanner")
    old.to_csv(cache.root / "index.csv", index=False)
    legacy = FrameCache.load(cache.root)
    assert set(legacy.index["scanner"]) == {""} and legacy.scanners == []


def test_fetal_planes_db_scanner_is_us_machine_and_enters_the_fingerprint(tmp_path):
    root = make_fetal_planes_db(tmp_path / "fpdb", patients=4)
    csv = root / "FETAL_PLANES_DB_data.csv"
    lines = csv.read_text().splitlines()
    # Patients 3 and 4 on another machine.
    csv.write_text("\n".join([lines[0]] + [ln.replace("Voluson E6", "Aloka") if ln.split(";")[1] in "34" else ln
                                           for ln in lines[1:]]) + "\n")
    source = parse_dataset_spec(f"fetal_planes_db:{root}", resolution=8)
    clips = [c for c in source.items("downstream") if isinstance(c, Clip)]
    assert {(c.subject_id, c.scanner) for c in clips} == {("1", "Voluson E6"), ("2", "Voluson E6"), ("3", "Aloka"),
                                                          ("4", "Aloka")}
    assert source.fingerprint_parts("downstream")["scanner_column"] == "US_Machine"


def test_csv_manifest_scanner_column_is_optional_and_changes_the_fingerprint_only_when_present(tmp_path):
    for k in range(2):
        write_image(tmp_path / f"{k}.png", 40 * k)
    plain = write_rows(tmp_path / "plain.csv", ["path", "label"], [["0.png", "a"], ["1.png", "b"]])
    scanned = write_rows(tmp_path / "scanned.csv", ["path", "label", "Scanner"], [["0.png", "a", "X"], ["1.png", "b", "Y"]])
    plain_src = parse_dataset_spec(f"csv:{plain}", resolution=8)
    scanned_src = parse_dataset_spec(f"csv:{scanned}", resolution=8)
    assert [c.scanner for c in plain_src.items("downstream")] == ["", ""]
    assert [c.scanner for c in scanned_src.items("downstream")] == ["X", "Y"]
    assert "scanner_column" not in plain_src.fingerprint_parts("downstream")
    assert scanned_src.fingerprint_parts("downstream")["scanner_column"] is True


# ---- the simulator's knob ----------------------------------------------------------------------------

def _sim(**knobs):
    return parse_dataset_spec("synthetic", resolution=32, downstream_subjects=8, downstream_images_per_subject=5,
                              workers=1, **knobs)


def test_simulated_scanners_look_different_and_nest_subjects():
    sim = _sim(scanners=4)
    by_machine: dict[str, list[np.ndarray]] = {}
    for k in range(8):
        clips = sim.labelled_images(k)
        assert len({c.scanner for c in clips}) == 1  # a subject is imaged by one machine
        by_machine.setdefault(clips[0].scanner, []).extend(c.frames[0] for c in clips)
    assert sorted(by_machine) == sorted(m.name for m in MACHINES)
    # The sector: where a machine's images are ever non-black; a narrow and a flat fan cover less than a wide one.
    covered = {name: float((np.stack(f) > 0).any(0).mean()) for name, f in by_machine.items()}
    assert covered["phased-narrow"] < covered["convex-wide"] - 0.1
    assert covered["convex-flat"] < covered["convex-wide"] - 0.1
    # The grey map: the flat fan's washed-out display is brighter inside the sector than the dark machine's.
    inside = {name: float(np.stack(f)[np.stack(f) > 0].mean()) for name, f in by_machine.items()}
    assert inside["convex-flat"] > inside["compact-dark"] + 10


def test_scanners_1_keeps_the_committed_smoke_fingerprint_and_records_no_scanner():
    from protocols.presets import load_preset

    data = load_preset("smoke")["data"]
    opts = {**data["pretrain"]["options"], **data["downstream"]["options"]}
    source = parse_dataset_spec("synthetic", resolution=load_preset("smoke")["resolution"], **opts)
    committed = next((REPO / "leaderboard" / "results").glob("*-smoke/imagenet/linear_probe/*/*/seed0.json"))
    recorded = json.loads(committed.read_text())["provenance"]["dataset_fingerprints"]["downstream"]
    assert fingerprint(source, "downstream") == recorded  # the results of the main smoke grid keep their keys
    assert fingerprint(parse_dataset_spec("synthetic", resolution=48, scanners=3, **opts), "downstream") != recorded
    assert fingerprint(parse_dataset_spec("synthetic", resolution=48, scanners=3, **opts), "pretrain") == \
        fingerprint(source, "pretrain")  # the knob does not touch pretraining
    assert {c.scanner for c in _sim().labelled_images(0)} == {""}
    with pytest.raises(UserError, match="scanners must be at most 4"):
        _sim(scanners=5)


# ---- leave one scanner out ---------------------------------------------------------------------------

def scanned_downstream(root: Path, n_subjects: int = 30) -> FrameCache:
    """The fake labelled set with subject k on scanner `sc{k % 3}`, one subject (s001) of no known scanner."""
    cache = fake_downstream(root, n_subjects=n_subjects)
    k = cache.index["subject_id"].str[1:].astype(int)
    scanner = np.where(k == 1, "", "sc" + (k % 3).astype(str))
    return FrameCache(cache.root, cache.frames, cache.index.assign(scanner=scanner), cache.class_names, cache.meta)


def test_a_fold_never_trains_or_selects_on_the_held_out_scanner(tmp_path):
    cache = scanned_downstream(tmp_path)
    fold_list, messages = folds(cache, min_scanners=2)
    assert [f.held_out for f in fold_list] == ["sc0", "sc1", "sc2"] and messages == []
    scanner = cache.index["scanner"].to_numpy()
    spec = load_protocol("linear_probe", {"probe": {"l2_grid": [0.1], "max_iter": 50}})
    feats = np.random.default_rng(0).normal(size=(len(cache.index), 6)).astype(np.float32)
    for fold in fold_list:
        view = fold.view
        used = np.concatenate([view.labelled_positions(s) for s in ("train", "val")])
        assert len(used) and not (scanner[used] == fold.held_out).any() and not (scanner[used] == "").any()
        for fraction in (0.1, 1.0):
            assert not (scanner[label_fraction(view.index, fraction, 3)] == fold.held_out).any()
        test = view.labelled_positions("test")
        original_test = cache.labelled_positions("test")
        assert set(test) == set(original_test[scanner[original_test] == fold.held_out])
        in_scanner = view.labelled_positions(IN_SCANNER_TEST)
        assert set(scanner[in_scanner]) == set(fold.train_scanners)
    # The probe scores both test sets of the fold with one model.
    out = run_probe(feats, view, spec, 0.1, 0, extra_tests=(IN_SCANNER_TEST,))
    assert out["metrics"]["test"]["n"] == len(test) and out["metrics"][IN_SCANNER_TEST]["n"] == len(in_scanner)


def test_fewer_than_two_scanners_skip_with_a_message(tmp_path):
    cache = fake_downstream(tmp_path)
    cache = FrameCache(cache.root, cache.frames, cache.index.assign(scanner="only"), cache.class_names, cache.meta)
    fold_list, messages = folds(cache, min_scanners=2)
    assert fold_list == [] and len(messages) == 1
    assert "1 scanner(s) (only)" in messages[0] and "needs at least 2" in messages[0]
    assert "-O scanners=N" in messages[0]
    # With 18 subjects, scanner sc1 has no test subject: it cannot be held out (it still trains the others).
    fold_list, messages = folds(scanned_downstream(tmp_path, n_subjects=18), min_scanners=2)
    assert [f.held_out for f in fold_list] == ["sc0", "sc2"] and fold_list[0].train_scanners == ["sc1", "sc2"]
    assert len(messages) == 1 and "'sc1'" in messages[0] and "no its test images" in messages[0]


# ---- the leaderboard's section -----------------------------------------------------------------------

def cross_scanner_result(init: str, held_out: str, seed: int, hashes: dict, rng, drop: float) -> dict:
    """A linear-probe result re-keyed as a cross-scanner run whose held-out test is `drop` worse."""
    r = make_result(init, "linear_probe", 0.1, seed, hashes, rng)
    r = copy.deepcopy(r)
    skill = INITS[init][2]
    from tests.unit.test_leaderboard import TEST_SUPPORT, confusion

    r["metrics"]["test"] = split_metrics(confusion(rng, TEST_SUPPORT, skill - drop))
    r["metrics"][IN_SCANNER_TEST] = split_metrics(confusion(rng, TEST_SUPPORT, skill))
    r["job"]["protocol"] = "cross_scanner"
    r["job"]["key"] = f"{seed:02d}{sum(map(ord, init + held_out)):062x}"[:64]
    r["protocol"] = {"name": "cross_scanner", "version": 1, "hash": hashes["cross_scanner"]}
    r["scanner"] = {"held_out": held_out, "train_scanners": [s for s in ("A", "B 2") if s != held_out],
                    "eval_protocol": "linear_probe"}
    return r


def test_section_shows_in_scanner_held_out_and_the_drop_and_validates(tmp_path):
    hashes = write_protocols(tmp_path / "protocols")
    hashes["cross_scanner"] = "c" * 64
    rng = np.random.default_rng(0)
    root = tmp_path / "results"
    for init, drop in (("vicreg", 0.3), ("imagenet", 0.0)):
        for held_out in ("A", "B 2"):
            for seed in range(3):
                r = cross_scanner_result(init, held_out, seed, hashes, rng, drop)
                path = root / r["track"]["id"] / init / "cross_scanner" / \
                    ("held-out-A" if held_out == "A" else "held-out-B_2") / "linear_probe" / "10pct" / \
                    "pretrain-seed0" / f"seed{seed}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(r))
    problems, n = validate_paths([root], hashes)
    assert n == 12 and problems == []
    results = load_results(root)
    assert results.main.empty and len(results.cross_scanner) == 12
    lines = render.cross_scanner_section(render.Page(results, hashes))
    text = "\n".join(lines)
    assert "## Cross-scanner: leave one scanner out" in text and "`A`, `B 2`" in text
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[1:-1]] for ln in lines
            if ln.startswith(("| vicreg", "| imagenet")) and "10 %" in ln}  # the main table, not the per-scanner one
    runs = results.cross_scanner
    for init, label in (("vicreg", "vicreg (information-theoretic)"), ("imagenet", "imagenet (baseline)")):
        mine = runs[runs["init"] == init]
        drop = float((mine["macro_f1"] - mine["in_scanner_macro_f1"]).mean())
        assert rows[label][5].startswith(f"{100 * drop:+.1f}") and rows[label][5].count("†") == 1
        assert "no test: one pretraining run" in rows[label][6]
    vicreg_drop = float(rows["vicreg (information-theoretic)"][5].split()[0])
    assert vicreg_drop < -15  # the planted 30-point loss shows
    # A result that trained on its held-out scanner is refused.
    bad = next(root.rglob("seed0.json"))
    r = json.loads(bad.read_text())
    r["scanner"]["train_scanners"].append(r["scanner"]["held_out"])
    bad.write_text(json.dumps(r))
    problems, _ = validate_paths([bad], hashes)
    assert [p.field for p in problems] == ["scanner.train_scanners"]

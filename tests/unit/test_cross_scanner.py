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


def _held_out_rows(cache: FrameCache, fold) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the held-out scanner: all of them, and its test images (the fold's `test`)."""
    mine = np.flatnonzero(cache.index["scanner"].to_numpy() == fold.held_out)
    return mine, fold.view.labelled_positions("test")


def test_knn_never_takes_a_neighbour_or_a_validation_query_from_the_held_out_scanner(tmp_path, monkeypatch):
    import protocols.knn as knn

    cache = scanned_downstream(tmp_path)
    fold = folds(cache, min_scanners=2)[0][0]
    mine, test = _held_out_rows(cache, fold)
    assert len(mine) > len(test) > 0  # the held-out scanner has train and val images a leak could use
    # One-hot features: row i's feature is e_i, so every row a k-NN call sees can be read back off it.
    feats = np.eye(len(cache.index), dtype=np.float32)
    calls = []
    real = knn.knn_predict

    def spy(train, train_labels, queries, *args, **kwargs):
        calls.append((set(train.argmax(1).tolist()), set(queries.argmax(1).tolist())))
        return real(train, train_labels, queries, *args, **kwargs)

    monkeypatch.setattr(knn, "knn_predict", spy)
    spec = load_protocol("knn", {"knn": {"k_grid": [1, 3], "temperature_grid": [0.1]}})
    for fraction in (0.1, 1.0):
        calls.clear()
        out = knn.run_knn(feats, fold.view, spec, fraction, 0, torch_cpu(), extra_tests=(IN_SCANNER_TEST,))
        # Calls: validation, the held-out test, the in-scanner test. Neighbours never come from the held-out
        # scanner; of its rows only its test images are ever queried, once, with the (k, T) already chosen.
        assert len(calls) == 3 and all(not (train & set(mine)) for train, _ in calls)
        assert not (calls[0][1] & set(mine)) and calls[1][1] == set(test) and not (calls[2][1] & set(mine))
        assert out["metrics"]["test"]["n"] == len(test)
        assert out["metrics"][IN_SCANNER_TEST]["n"] == len(fold.view.labelled_positions(IN_SCANNER_TEST))


def test_finetune_never_trains_recalibrates_or_selects_on_the_held_out_scanner(tmp_path, monkeypatch):
    import protocols.finetune as ft
    from tests.unit.downstream_fakes import TinyEncoder

    cache = scanned_downstream(tmp_path)
    fold = folds(cache, min_scanners=2)[0][0]
    mine, test = _held_out_rows(cache, fold)
    split = fold.view.index["split"].to_numpy()
    phase, seen = ["fit"], []  # every batch of frames the job reads, with what it was read for
    real_predict, real_batch = ft.predict, ft._batch

    def predict(model, frames, positions, batch_size, device):
        phase[0] = f"score {split[positions[0]]}"  # val, test or the in-scanner test
        try:
            return real_predict(model, frames, positions, batch_size, device)
        finally:
            phase[0] = "fit"

    def batch(frames, positions, device):
        seen.append((phase[0], np.asarray(positions)))
        return real_batch(frames, positions, device)

    monkeypatch.setattr(ft, "predict", predict)
    monkeypatch.setattr(ft, "_batch", batch)
    spec = load_protocol("finetune", {"train": {"epochs": 2, "batch_size": 16, "min_steps_per_epoch": 2,
                                                "warmup_epochs": 0, "lr_grid": [0.01]}})
    out = ft.run_finetune(TinyEncoder, fold.view, spec, 0.5, seed=0, device=torch_cpu(), progress=False,
                          extra_tests=(IN_SCANNER_TEST,))
    leaked = {p for what, rows in seen if what != "score test" for p in rows if p in set(mine)}
    assert leaked == set()  # the head's probe, training, BatchNorm recalibration and validation: none
    scored = [rows for what, rows in seen if what == "score test"]
    assert set(np.concatenate(scored)) == set(test)  # the held-out scanner's test images, scored once at the end
    phases = [what for what, _ in seen]
    assert set(phases[phases.index("score test"):]) == {"score test", f"score {IN_SCANNER_TEST}"}
    assert out["metrics"]["test"]["n"] == len(test)
    assert out["metrics"][IN_SCANNER_TEST]["n"] == len(fold.view.labelled_positions(IN_SCANNER_TEST))


def torch_cpu():
    import torch

    return torch.device("cpu")


def test_fold_jobs_of_every_protocol_record_the_held_out_scanner_and_keep_the_probes_keys(tmp_path):
    from protocols import keys
    from protocols.cross_scanner import fold_jobs
    from protocols.grid import imagenet_init, make_track
    from protocols.spec import evaluation_specs, protocol_key

    spec = load_protocol("cross_scanner")
    assert spec.settings["eval_protocols"] == ["linear_probe", "knn", "finetune"]
    # The probe's runs record the hash of version 1's file (its list was the probe alone), as the committed
    # smoke runs do, so they keep their keys; each other protocol's runs record a hash of their own.
    committed = json.loads(next((REPO / "leaderboard" / "results").glob(
        "*/*/cross_scanner/*/linear_probe/*/*/*.json")).read_text())["protocol"]
    assert spec.scoped("linear_probe").hash == committed["hash"] and committed["version"] == spec.version
    assert len({spec.scoped(e).hash for e in spec.settings["eval_protocols"]} | {committed["hash"]}) == 3
    cache = scanned_downstream(tmp_path)
    fold_list, _ = folds(cache, min_scanners=2)
    evals = evaluation_specs(spec.settings["eval_protocols"], {}, fractions=[0.1], seeds=[0], pretrain_seeds=[0])
    track = make_track("synthetic", "synthetic", "efficientnet_lite0", 16, "smoke")
    from protocols.grid import build_grid

    by_fold = {}
    for fold in fold_list:
        jobs = fold_jobs(spec, fold, [imagenet_init("efficientnet_lite0", 0)], evals, track, tmp_path / "results",
                         tmp_path / "runs", progress=False)
        grid = build_grid([imagenet_init("efficientnet_lite0", 0)], evals, track, fold.view, tmp_path / "results")
        assert [g.protocol.name for g in grid] == ["linear_probe", "knn", "finetune"]
        probe = keys.ablation_key(protocol_key("cross_scanner", committed["hash"], {}), {"held_out": fold.held_out},
                                  grid[0].key)
        assert jobs[0].key == probe
        assert [j.output.parts[-4] for j in jobs] == ["linear_probe", "knn", "finetune"]
        assert all(f"held-out-{fold.held_out}" in str(j.output) for j in jobs)
        by_fold[fold.held_out] = [j.key for j in jobs]
    every = [k for ks in by_fold.values() for k in ks]
    assert len(set(every)) == len(every) == 9  # one key per fold × protocol: no fold resumes another's run
    # A k-NN run of the last fold: its record names the held-out scanner and the protocol, scores both test
    # sets, and validates against the protocol files as they are (its hash scoped to the k-NN).
    record = jobs[1].produce()
    assert record["scanner"]["held_out"] == fold.held_out and fold.held_out not in record["scanner"]["train_scanners"]
    assert record["scanner"]["eval_protocol"] == "knn" and record["job"]["key"] == jobs[1].key
    assert record["protocol"] == {"name": "cross_scanner", "version": 1, "hash": spec.scoped("knn").hash}
    assert record["metrics"][IN_SCANNER_TEST]["n"] == len(fold.view.labelled_positions(IN_SCANNER_TEST))
    jobs[1].output.parent.mkdir(parents=True)
    jobs[1].output.write_text(json.dumps(record))
    from protocols.spec import known_protocol_hashes

    problems, n = validate_paths([tmp_path / "results"], known_protocol_hashes())
    assert n == 1 and problems == []


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

def cross_scanner_result(init: str, held_out: str, seed: int, hashes: dict, rng, drop: float,
                         eval_protocol: str = "linear_probe") -> dict:
    """An `eval_protocol` result re-keyed as a cross-scanner run whose held-out test is `drop` worse."""
    r = make_result(init, eval_protocol, 0.1, seed, hashes, rng)
    r = copy.deepcopy(r)
    skill = INITS[init][2]
    from tests.unit.test_leaderboard import TEST_SUPPORT, confusion

    r["metrics"]["test"] = split_metrics(confusion(rng, TEST_SUPPORT, skill - drop))
    r["metrics"][IN_SCANNER_TEST] = split_metrics(confusion(rng, TEST_SUPPORT, skill))
    r["job"]["protocol"] = "cross_scanner"
    r["job"]["key"] = f"{seed:02d}{sum(map(ord, init + held_out + eval_protocol)):062x}"[:64]
    r["protocol"] = {"name": "cross_scanner", "version": 1,
                     "hash": hashes.get(f"cross_scanner/{eval_protocol}", hashes["cross_scanner"])}
    r["scanner"] = {"held_out": held_out, "train_scanners": [s for s in ("A", "B 2") if s != held_out],
                    "eval_protocol": eval_protocol}
    return r


def write_cross_scanner(root: Path, r: dict, held_out: str, seed: int) -> Path:
    path = root / r["track"]["id"] / r["init"]["name"] / "cross_scanner" / \
        ("held-out-A" if held_out == "A" else "held-out-B_2") / r["scanner"]["eval_protocol"] / "10pct" / \
        "pretrain-seed0" / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r))
    return path


def test_section_shows_every_evaluation_protocol_with_its_scoped_hash(tmp_path):
    hashes = write_protocols(tmp_path / "protocols")
    scoped = {f"cross_scanner/{ev}": c * 64 for ev, c in (("linear_probe", "a"), ("knn", "b"), ("finetune", "e"))}
    hashes.update({"cross_scanner": "c" * 64, **scoped})
    hashes.setdefault("knn", "d" * 64)
    rng = np.random.default_rng(1)
    root = tmp_path / "results"
    for ev, drop in (("linear_probe", 0.0), ("knn", 0.2), ("finetune", 0.4)):
        for held_out in ("A", "B 2"):
            for seed in range(3):
                write_cross_scanner(root, cross_scanner_result("imagenet", held_out, seed, hashes, rng, drop, ev),
                                    held_out, seed)
    problems, n = validate_paths([root], hashes)
    assert n == 18 and problems == []
    lines = render.cross_scanner_section(render.Page(load_results(root), hashes))
    text = "\n".join(lines)
    assert "`eeeeeeeeeeee` (finetune)" in text and "`bbbbbbbbbbbb` (knn)" in text and "(linear_probe)" in text
    rows = {ln.split("|")[2].strip(): [c.strip() for c in ln.split("|")[1:-1]] for ln in lines
            if ln.startswith("| imagenet") and "10 %" in ln}
    assert set(rows) == {"linear_probe", "knn", "finetune"}
    # Each protocol's own held-out drop shows in its own row (planted: 0, 20 and 40 points).
    drops = {ev: float(row[5].split()[0]) for ev, row in rows.items()}
    assert drops["finetune"] < drops["knn"] - 5 < drops["linear_probe"] - 10
    # A knn run that records the probe's scoped hash (or the whole file's) is not of the current protocol.
    bad = next(root.rglob("knn/10pct/pretrain-seed0/seed0.json"))
    r = json.loads(bad.read_text())
    for wrong in (scoped["cross_scanner/linear_probe"], hashes["cross_scanner"]):
        bad.write_text(json.dumps({**r, "protocol": {**r["protocol"], "hash": wrong}}))
        problems, _ = validate_paths([bad], hashes)
        assert [p.field for p in problems] == ["protocol.hash"] and "scoped to knn" in problems[0].message


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

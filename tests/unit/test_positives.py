"""The positives ablation: its protocol's defaults and checks, its runs (units, keys, folders, the checkpoint a
mode shares with the main grid) and its leaderboard section (scores, paired Δ against the reference mode,
Holm's correction, no test with one pretraining run), web page and validation, on made-up results whose numbers
are chosen so that every verdict is known."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from benchmark.errors import UserError
from leaderboard import positives, render
from leaderboard.load import load_results
from leaderboard.results import job_variant, record_parts
from leaderboard.validate import check_ablation
from leaderboard.webpage import render_site
from protocols.keys import job_key, positives_key, record_key
from protocols.positives import Unit, units
from protocols.spec import known_protocol_hashes, load_protocol
from tests.unit.test_leaderboard import TRACK, canonical_sha256, make_result, write_protocols
from tests.unit.test_learning_curve import _write

TINY = Path(__file__).resolve().parents[1] / "e2e" / "tiny_preset.toml"
MODES = ("same_frame", "temporal:4")
# simclr: 3 pretraining runs × 2 seeds; temporal beats same_frame by 6 points in every pair, give or take
# 0.4 (its p is known, below). vicreg: 3 runs, the modes differ by +1, −1 and 0 points (no effect). barlowtwins: one
# pretraining run, its seeds' gains differ (its Δ has an interval over seeds only, and no test).
SAME = {"simclr": 0.50, "vicreg": 0.60, "barlowtwins": 0.40}
GAIN = {("simclr", 0): 0.058, ("simclr", 1): 0.062, ("simclr", 2): 0.060,
        ("vicreg", 0): 0.01, ("vicreg", 1): -0.01, ("vicreg", 2): 0.0, ("barlowtwins", 0): 0.02}
RUNS = {"simclr": (0, 1, 2), "vicreg": (0, 1, 2), "barlowtwins": (0,)}


def _protocols(root: Path) -> dict[str, str]:
    hashes = write_protocols(root)
    (root / "positives.toml").write_text('name = "positives"\nversion = 1\n')
    hashes["positives"] = canonical_sha256({"name": "positives", "version": 1})
    return hashes


def positives_record(init: str, mode: str, pretrain_seed: int, seed: int, f1: float, hashes: dict) -> dict:
    r = make_result(init, "linear_probe", 0.1, seed, hashes, np.random.default_rng(seed), pretrain_seed=pretrain_seed)
    r["metrics"]["test"]["macro_f1"] = f1
    r["metrics"]["val"]["macro_f1"] = round(f1 - 0.01, 6)
    r["job"]["protocol"] = r["protocol"]["name"] = "positives"
    r["protocol"]["hash"] = hashes["positives"]
    r["ablation"] = {"axis": "positives", "level": MODES.index(mode), "positives": mode, "reference": "same_frame",
                     "eval_protocol": "linear_probe", "eval_protocol_hash": hashes["linear_probe"]}
    r["init"]["checkpoint_hash"] = canonical_sha256(["ckpt", init, mode, pretrain_seed])
    rank = 100.0 if mode == "same_frame" else 200.0
    r["init"]["pretrain"] = {"steps": 150, "seed": pretrain_seed, "positives": mode, "diagnostics": {
        "encoder_change": 0.3, "problems": [],
        "before": {"effective_rank": 600.0, "embedding_std": 0.6, "knn_macro_f1": 0.2},
        "after": {"effective_rank": rank + pretrain_seed, "embedding_std": 0.7, "knn_macro_f1": 0.3}}}
    r["job"]["key"] = canonical_sha256([init, mode, pretrain_seed, seed])
    return r


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(the results loaded, the known protocol hashes, the expanded positives runs of the track, the folder)."""
    root = tmp_path_factory.mktemp("positives")
    hashes = _protocols(root / "protocols")
    results = root / "results"
    for init, seeds in RUNS.items():
        for ps in seeds:
            for seed in (0, 1):
                base = SAME[init] + 0.02 * ps + 0.01 * seed  # runs and seeds differ; the pairs share it
                _write(results, positives_record(init, "same_frame", ps, seed, base, hashes))
                jitter = 0.004 * seed if init == "barlowtwins" else 0.0  # its one run's seeds differ
                _write(results, positives_record(init, "temporal:4", ps, seed, base + GAIN[(init, ps)] + jitter,
                                                 hashes))
    loaded = load_results(results)
    runs = positives.expand(loaded.ablation)
    return loaded, known_protocol_hashes(root / "protocols"), runs[runs["track"] == TRACK["id"]], results


# ---------------------------------------------------------------- the protocol


def test_the_shipped_protocol_compares_same_frame_and_temporal_positives_with_replicated_pretraining():
    s = load_protocol("positives").settings
    assert s["methods"] == ["simclr", "vicreg"] and s["modes"] == ["same_frame", "temporal:4"]
    assert s["reference"] == "same_frame" and s["eval_protocols"] == ["linear_probe"]
    assert s["fractions"] == [0.01, 0.1] and len(s["pretrain_seeds"]) >= 3


@pytest.mark.parametrize("line, message", [
    ('modes = ["same_frame", "temporal:0"]', "--positives must be `same_frame` or `temporal:K` with K >= 1"),
    ('modes = ["same_frame", " temporal:4"]', "key 'modes': write ' temporal:4' as 'temporal:4'"),
    ('modes = ["same_frame", "same_frame"]', "key 'modes' needs at least 2 distinct positives settings"),
    ('reference = "temporal:2"', "key 'reference' must be one of the modes ['same_frame', 'temporal:4'], got "
                                 "'temporal:2'"),
    ("fractions = [0.1, 0.1]", "key 'fractions' must be distinct label fractions in (0, 1]"),
    ("fractions = [0.0]", "key 'fractions' must be distinct label fractions in (0, 1]"),
])
def test_a_preset_s_bad_positives_table_is_refused_with_the_key_and_the_fix(tmp_path, line, message):
    from protocols.presets import load_preset

    bad = tmp_path / "bad.toml"
    head, _, table = TINY.read_text().partition("[protocols.positives]\n")
    key = line.split(" = ")[0]
    kept = [kept for kept in table.splitlines() if not kept.startswith(f"{key} = ")]
    bad.write_text(head + "[protocols.positives]\n" + "\n".join([line, *kept]) + "\n")
    with pytest.raises(UserError) as info:
        load_preset(str(bad))
    assert str(info.value).startswith(f"{bad} [protocols.positives]: ") and message in str(info.value)


def test_units_complete_whole_pairs_pretraining_seed_by_pretraining_seed():
    spec = load_protocol("positives")
    got = [(u.pretrain_seed, u.method, u.positives) for u in units(spec, ["simclr", "vicreg"])]
    assert got[:4] == [(0, "simclr", "same_frame"), (0, "simclr", "temporal:4"), (0, "vicreg", "same_frame"),
                       (0, "vicreg", "temporal:4")]
    assert len(got) == 2 * 2 * len(spec.settings["pretrain_seeds"]) and len(set(got)) == len(got)
    assert Unit("simclr", "temporal:4", 1, 0).tag == "positives-temporal-4"
    assert Unit("simclr", "same_frame", 0, 0).tag == "positives-same-frame"


def test_a_positives_run_is_keyed_by_its_mode_and_lies_in_its_mode_s_folder(made):
    _, _, runs, results = made
    record = json.loads((results / TRACK["id"] / "simclr" / "positives" / "positives-temporal-4" / "linear_probe" / "10pct"
                         / "pretrain-seed0" / "seed0.json")
                        .read_text())
    assert job_variant(record) == "positives-temporal-4/linear_probe"
    assert record_parts(record)[:5] == [TRACK["id"], "simclr", "positives", "positives-temporal-4", "linear_probe"]
    evaluation = job_key({"name": "linear_probe"}, "simclr", "x", {}, TRACK, 0.1, 0, 0)
    assert positives_key("f" * 64, "temporal:4", evaluation) != positives_key("f" * 64, "same_frame", evaluation)
    # The key a result implies names its mode: the same record with the other mode is another job.
    other = {**record, "ablation": {**record["ablation"], "positives": "same_frame"}}
    assert record_key(record) != record_key(other)


def test_a_positives_result_must_name_the_positives_its_checkpoint_was_pretrained_with(made):
    _, _, _, results = made
    record = json.loads((results / TRACK["id"] / "simclr" / "positives" / "positives-temporal-4" / "linear_probe" / "10pct"
                         / "pretrain-seed0" / "seed0.json")
                        .read_text())
    assert check_ablation(record) == []
    record["init"]["pretrain"]["positives"] = "same_frame"
    assert check_ablation(record) == [("ablation.positives", "temporal:4 but its checkpoint was pretrained with "
                                                             "same_frame positives (init.pretrain.positives)")]


# ---------------------------------------------------------------- the numbers


def test_each_mode_is_paired_with_the_reference_mode_over_pretraining_runs_and_holm_corrected(made):
    _, _, runs, _ = made
    assert positives.reference_mode(runs) == "same_frame"
    comps = {c.init: c for c in positives.comparisons(runs, "same_frame")}
    assert set(comps) == {"simclr", "vicreg", "barlowtwins"}
    simclr, vicreg, bt = comps["simclr"].delta, comps["vicreg"].delta, comps["barlowtwins"].delta
    assert simclr.comparison.diff.mean == pytest.approx(0.06) and simclr.pretrain_runs == 3 and simclr.pairs == 6
    # The test is over the 3 pretraining runs' mean differences; Holm over the 2 tested comparisons.
    raw = {init: sps.ttest_1samp([GAIN[(init, ps)] for ps in RUNS[init]], 0.0).pvalue for init in ("simclr", "vicreg")}
    assert simclr.p_holm == pytest.approx(min(1.0, 2 * min(raw.values())))
    assert vicreg.p_holm == pytest.approx(max(min(1.0, 2 * min(raw.values())), raw["vicreg"]))
    assert simclr.marker == "▲" and vicreg.marker == ""
    assert vicreg.comparison.diff.mean == pytest.approx(0.0, abs=1e-12)
    # One pretraining run: an interval over its seeds, no test.
    assert bt.pretrain_runs == 1 and not bt.tested and math.isnan(bt.p_holm)


def test_mode_scores_give_each_mode_its_cell_and_its_checkpoints_diagnostics(made):
    _, _, runs, _ = made
    scores = positives.mode_scores(runs)
    same, temporal = scores[("simclr", "linear_probe", 0.1)]
    assert (same.positives, temporal.positives) == MODES
    assert same.cell.pretrain_runs == 3 and same.cell.runs == 6
    assert temporal.cell.interval.mean - same.cell.interval.mean == pytest.approx(0.06)
    assert same.rank_after == pytest.approx(101.0) and temporal.rank_after == pytest.approx(201.0)
    assert same.knn_after == pytest.approx(0.3)


def test_the_section_shows_every_mode_the_deltas_and_what_is_significant(made):
    loaded, known, _, _ = made
    text = "\n".join(render.positives_section(render.Page(loaded, known)))
    assert "## Positives: does the video's time help?" in text
    assert "reference mode: `same_frame`" in text
    row = next(line for line in text.splitlines() if line.startswith("| `simclr`") and "`temporal:4`" in line)
    assert "+6.0 [" in row and "▲" in row and "201.0" in row
    assert next(line for line in text.splitlines() if line.startswith("| `simclr`") and "`same_frame`" in line
                ).rstrip(" |").endswith("reference")
    bt = next(line for line in text.splitlines() if line.startswith("| `barlowtwins`") and "`temporal:4`" in line)
    assert "+2.2 [" in bt and "†" in bt and "p=" not in bt
    assert "2 comparisons tested; significant after Holm's correction: `simclr` `temporal:4` linear_probe at 10 % +6.0" \
        in text
    assert "Reproduce: `sslbench ablation positives --method barlowtwins,simclr,vicreg --preset smoke`." in text


def test_the_section_says_when_nothing_is_tested_and_is_absent_without_runs(tmp_path):
    hashes = _protocols(tmp_path / "protocols")
    for mode in MODES:
        for seed in (0, 1):
            _write(tmp_path / "results", positives_record("simclr", mode, 0, seed, 0.5 + 0.01 * seed, hashes))
    loaded = load_results(tmp_path / "results")
    known = known_protocol_hashes(tmp_path / "protocols")
    text = "\n".join(render.positives_section(render.Page(loaded, known)))
    assert "No comparison has two pretraining runs yet" in text
    empty = tmp_path / "empty"
    _write(empty, make_result("imagenet", "linear_probe", 0.1, 0, hashes, np.random.default_rng(0)))
    assert render.positives_section(render.Page(load_results(empty), known)) == []


def test_the_web_page_shows_the_section(made, tmp_path):
    loaded, known, _, _ = made
    html = render_site(loaded, known, {})
    assert 'id="positives-does-the-videos-time-help"' in html and "same_frame" in html

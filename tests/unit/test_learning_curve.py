"""The learning curve: its protocol's defaults, its runs (units, shards, keys, the checkpoint a budget shares
with the main grid) and its leaderboard section, table, "steps until", flattening verdict, figure, web page
and validation, on made-up results whose numbers are chosen so that every verdict is known."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats as sps

from benchmark.errors import UserError
from benchmark.runner import select_shard
from leaderboard import figures, learning_curve, render
from leaderboard.load import load_results
from leaderboard.results import job_variant, record_parts
from leaderboard.validate import check_ablation, validate_paths
from leaderboard.webpage import render_site
from protocols.keys import job_key, learning_curve_key, record_key
from protocols.learning_curve import units
from protocols.spec import known_protocol_hashes, load_protocol
from tests.unit.test_leaderboard import TRACK, canonical_sha256, make_result, write_protocols

TINY = Path(__file__).resolve().parents[1] / "e2e" / "tiny_preset.toml"
FRACTION = 0.1
BUDGETS = (150, 300, 600, 1200)
# simclr: 2 pretraining runs × 3 seeds, still rising at 1200 steps; its pool k-NN rises by +6 and +3 points at
# 150 steps and by exactly +5 in both runs at 300. vicreg: 1 run × 5 seeds, flat from 600 on (its seeds scatter
# more at 1200), its k-NN never rises by 5. barlowtwins: 2 budgets, 1 seed each (no interval), a pool without labels.
SIMCLR = {150: 0.40, 300: 0.50, 600: 0.60, 1200: 0.70}
SIMCLR_KNN = {(150, 0): 0.26, (150, 1): 0.23, (300, 0): 0.25, (300, 1): 0.25, (600, 0): 0.30, (600, 1): 0.28,
              (1200, 0): 0.35, (1200, 1): 0.31}
VICREG = {150: 0.30, 300: 0.40, 600: 0.45, 1200: 0.455}
VICREG_KNN = {150: 0.22, 300: 0.23, 600: 0.23, 1200: 0.24}
VICREG_SPREAD = {150: 0.02, 300: 0.02, 600: 0.02, 1200: 0.03}  # seed to seed: wider at the largest budget
KNN_BEFORE = 0.20
REFERENCE = {"imagenet": 0.77, "random": 0.21}


def _protocols(root: Path) -> dict[str, str]:
    hashes = write_protocols(root)
    (root / "learning_curve.toml").write_text('name = "learning_curve"\nversion = 1\n')
    hashes["learning_curve"] = canonical_sha256({"name": "learning_curve", "version": 1})
    return hashes


def curve_record(init: str, steps: int, seed: int, f1: float, hashes: dict, *, pretrain_seed: int = 0,
                 knn: tuple[float | None, float | None] = (KNN_BEFORE, 0.3), change: float = 0.1) -> dict:
    """A learning-curve result of `init` pretrained for `steps` with the given test macro-F1 (its val
    macro-F1 is 0.01 below) and pool k-NN before and after."""
    r = make_result(init, "linear_probe", FRACTION, seed, hashes, np.random.default_rng(seed), pretrain_seed=pretrain_seed)
    r["metrics"]["test"]["macro_f1"] = f1
    r["metrics"]["val"]["macro_f1"] = round(f1 - 0.01, 6)
    r["job"]["protocol"] = r["protocol"]["name"] = "learning_curve"
    r["protocol"]["hash"] = hashes["learning_curve"]
    r["ablation"] = {"axis": "steps", "level": BUDGETS.index(steps), "steps": steps, "eval_protocol": "linear_probe",
                     "eval_protocol_hash": hashes["linear_probe"]}
    r["init"]["checkpoint_hash"] = canonical_sha256(["ckpt", init, steps, pretrain_seed])
    r["init"]["pretrain"] = {"steps": steps, "seed": pretrain_seed, "diagnostics": {
        "encoder_change": change, "problems": [],
        "before": {"effective_rank": 600.0, "embedding_std": 0.6, "knn_macro_f1": knn[0]},
        "after": {"effective_rank": 300.0 + steps / 10, "embedding_std": 0.7, "knn_macro_f1": knn[1]}}}
    r["job"]["key"] = canonical_sha256([init, steps, pretrain_seed, seed])
    return r


def _write(results: Path, record: dict) -> Path:
    path = results.joinpath(*record_parts(record))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return path


def make_curve(root: Path) -> tuple[Path, dict[str, str]]:
    hashes = _protocols(root / "protocols")
    results = root / "results"
    for steps in BUDGETS:
        for ps in (0, 1):
            for seed in range(3):
                _write(results, curve_record("simclr", steps, seed, SIMCLR[steps] + 0.01 * seed + 0.005 * ps, hashes,
                                             pretrain_seed=ps, knn=(KNN_BEFORE, SIMCLR_KNN[(steps, ps)]),
                                             change=0.2 * ps + steps / 1000))
        for seed in range(5):
            _write(results, curve_record("vicreg", steps, seed, VICREG[steps] + VICREG_SPREAD[steps] * (seed - 2), hashes,
                                         knn=(KNN_BEFORE, VICREG_KNN[steps])))
    for steps in (150, 300):
        _write(results, curve_record("barlowtwins", steps, 0, 0.25, hashes, knn=(None, None)))
    # The reference lines: the track's main probe at the curve's fraction, with the curve's protocol version.
    for init, value in REFERENCE.items():
        for seed in range(5):
            r = make_result(init, "linear_probe", FRACTION, seed, hashes, np.random.default_rng(seed))
            r["metrics"]["test"]["macro_f1"] = value + 0.01 * (seed - 2)
            _write(results, r)
    # Neither another fraction nor another version of the probe may enter them.
    other = make_result("imagenet", "linear_probe", 0.01, 0, hashes, np.random.default_rng(9))
    other["metrics"]["test"]["macro_f1"] = 0.05
    _write(results, other)
    older = make_result("random", "linear_probe", FRACTION, 0, hashes, np.random.default_rng(9), pretrain_seed=3)
    older["protocol"]["hash"] = "ab" * 32
    older["metrics"]["test"]["macro_f1"] = 0.99
    _write(results, older)
    return results, known_protocol_hashes(root / "protocols")


@pytest.fixture(scope="module")
def curve(tmp_path_factory):
    """(the results loaded, the known protocol hashes, the expanded curve runs of the track, the results folder)."""
    results, known = make_curve(tmp_path_factory.mktemp("curve"))
    loaded = load_results(results)
    runs = learning_curve.expand(loaded.ablation)
    return loaded, known, runs[runs["track"] == TRACK["id"]], results


# ---------------------------------------------------------------- the protocol


def test_the_shipped_protocol_runs_every_built_in_method_at_four_doubling_budgets():
    from methods.registry import available_methods

    s = load_protocol("learning_curve").settings
    built_in = sorted(n for n, cls in available_methods().items() if cls.__module__.startswith("methods."))
    assert sorted(s["methods"]) == built_in and len(built_in) == 7
    assert (s["budgets"], s["eval_protocols"], s["fraction"]) == ([150, 300, 600, 1200], ["linear_probe"], 0.1)
    assert (s["seeds"], s["pretrain_seeds"]) == ([0, 1, 2, 3, 4], [0])


def test_a_preset_overrides_the_curve_and_its_values_are_checked_there(tmp_path):
    from protocols.presets import load_preset

    assert load_preset(str(TINY))["protocols"]["learning_curve"]["budgets"] == [2, 4]
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.read_text().replace("budgets = [2, 4]", "budgets = [4, 2]"))
    with pytest.raises(UserError) as info:
        load_preset(str(bad))
    assert str(info.value).startswith(f"{bad} [protocols.learning_curve]: ")
    assert str(info.value).endswith("key 'budgets' needs at least 2 distinct pretraining budgets (steps) in "
                                    "increasing order, e.g. [150, 300, 600, 1200]; got [4, 2]")


# ---------------------------------------------------------------- the runs


def test_units_deal_the_largest_budgets_out_over_the_shards():
    spec = load_protocol("learning_curve")
    all_units = units(spec, spec.settings["methods"])
    assert len(all_units) == 7 * 4 and all_units[0].steps == 1200 and all_units[-1].steps == 150
    assert {(u.method, u.steps, u.level) for u in all_units} == {
        (m, b, i) for m in spec.settings["methods"] for i, b in enumerate(spec.settings["budgets"])}
    for n in range(2, 8):
        totals = [sum(u.steps for u in select_shard(all_units, (i, n))) for i in range(n)]
        assert max(totals) / min(totals) < 1.6, (n, totals)
    # Seven shards: one method each, at every budget.
    assert [(u.method, u.steps) for u in select_shard(all_units, (4, 7))] == [
        ("simclr", 1200), ("simclr", 600), ("simclr", 300), ("simclr", 150)]


def test_a_budget_equal_to_the_presets_is_the_main_grids_pretraining_run(tmp_path):
    from benchmark import track

    ctx = track.track_context(str(TINY), results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                              cache_dir=str(tmp_path / "cache"), new_results=False)
    pool = SimpleNamespace(fingerprint="f" * 64)
    cfg, run_dir, main = track.pretrain_run(ctx, "simclr", pool, 0)
    assert cfg.steps == 2 and run_dir == ctx.pretrain_dir
    same = track.pretrain_run(ctx, "simclr", pool, 0, steps=2)
    longer = track.pretrain_run(ctx, "simclr", pool, 0, steps=4)
    assert same[2] == main and same[0] == cfg
    assert longer[0].steps == 4 and longer[2] != main and longer[2].parent.parent == main.parent.parent
    assert {k: v for k, v in vars(longer[0]).items() if k != "steps"} == {k: v for k, v in vars(cfg).items()
                                                                         if k != "steps"}


def test_a_curve_run_is_keyed_by_its_budget_and_the_evaluation_job_not_by_the_presets_lists(curve):
    _, _, runs, results = curve
    record = json.loads((results / runs.iloc[0]["path"]).read_text())
    ab, init = record["ablation"], record["init"]
    eval_key = job_key({"name": "linear_probe", "hash": ab["eval_protocol_hash"], "overrides": {}}, init["name"],
                       f"ckpt:{init['checkpoint_hash']}", record["provenance"]["dataset_fingerprints"], record["track"],
                       FRACTION, record["job"]["pretrain_seed"], record["job"]["seed"])
    key = learning_curve_key(record["protocol"]["hash"], ab["steps"], eval_key)
    assert record_key(record) == key
    # The preset's lists choose which runs are made: they never re-key one.
    assert record_key(record, {"budgets": [75, 150], "methods": ["simclr"], "seeds": [0]}) == key
    assert learning_curve_key(record["protocol"]["hash"], ab["steps"] * 2, eval_key) != key
    assert job_variant(record) == f"steps-{ab['steps']}/linear_probe"
    assert record_parts(record)[2:5] == ["learning_curve", f"steps-{ab['steps']}", "linear_probe"]


# ---------------------------------------------------------------- the numbers


def test_budget_rows_average_the_checkpoints_and_give_the_interval_over_pretraining_runs(curve):
    _, _, runs, _ = curve
    rows = {(r.init, r.steps): r for r in learning_curve.budget_rows(runs)}
    assert sorted(rows) == sorted([("simclr", b) for b in BUDGETS] + [("vicreg", b) for b in BUDGETS]
                                  + [("barlowtwins", 150), ("barlowtwins", 300)])
    r = rows[("simclr", 150)]
    assert r.pretrain_runs == 2 and r.encoder_change == pytest.approx((0.15 + 0.35) / 2)
    assert r.knn == pytest.approx((0.20, (0.26 + 0.23) / 2)) and r.rank == pytest.approx((600.0, 315.0))
    score = r.scores["linear_probe"]
    assert score.val == pytest.approx(0.40 + 0.01 + 0.0025 - 0.01)
    # The interval is over the two pretraining runs' means (0.41 and 0.415), not over the 6 jobs.
    means = np.array([0.41, 0.415])
    half = sps.t.ppf(0.975, 1) * means.std(ddof=1) / math.sqrt(2)
    assert (score.test.interval.low, score.test.interval.high) == pytest.approx((means.mean() - half, means.mean() + half))
    assert (score.test.pretrain_runs, score.test.runs) == (2, 6)
    assert rows[("barlowtwins", 300)].scores["linear_probe"].test.conditional
    assert math.isnan(rows[("barlowtwins", 300)].knn[1])


def test_steps_until_the_pool_knn_rises_by_five_points_need_every_pretraining_run(curve):
    _, _, runs, _ = curve
    rise = {r.init: r for r in learning_curve.knn_rise(runs)}
    # simclr: +6 and +3 at 150 steps (one run is not every run), exactly +5 in both at 300.
    assert (rise["simclr"].steps, rise["simclr"].rise) == (300, pytest.approx(0.05))
    assert rise["vicreg"].steps is None and rise["vicreg"].largest == 1200
    assert rise["vicreg"].rise == pytest.approx(0.04)  # its rise at the largest budget
    assert not rise["barlowtwins"].labelled


def test_a_curve_has_flattened_when_its_last_doubling_gains_less_than_its_interval_s_half_width(curve):
    _, _, runs, _ = curve
    trends = {t.init: t for t in learning_curve.trends(runs, "linear_probe")}
    vicreg = trends["vicreg"]
    half = sps.t.ppf(0.975, 4) * np.std([-0.06, -0.03, 0, 0.03, 0.06], ddof=1) / math.sqrt(5)  # at 1200 steps
    assert (vicreg.before, vicreg.after) == (600, 1200)
    assert vicreg.gain == pytest.approx(0.005) and vicreg.half_width == pytest.approx(half)
    assert vicreg.flattened is True
    assert trends["simclr"].gain == pytest.approx(0.10) and trends["simclr"].flattened is False
    assert trends["barlowtwins"].flattened is None  # one seed at its largest budget: no interval


def test_the_reference_lines_are_the_main_probe_at_the_curve_s_fraction_and_protocol_version(curve):
    loaded, _, runs, _ = curve
    cells = learning_curve.reference_cells(loaded.main, runs, "linear_probe")
    assert sorted(cells) == ["imagenet", "random"]
    for init, value in REFERENCE.items():
        assert cells[init].interval.mean == pytest.approx(value) and cells[init].runs == 5
    assert learning_curve.reference_cells(loaded.main, runs, "finetune") == {}


# ---------------------------------------------------------------- the section


def test_the_section_shows_the_tables_the_verdicts_and_says_no_test_is_made(curve):
    loaded, known, _, _ = curve
    text = "\n".join(render.learning_curve_section(render.Page(loaded, known)))
    assert text.startswith("## Learning curves: score against pretraining budget\n")
    assert "No statistical test is made here" in text
    assert f"![learning curves](figures/{figures.learning_curve_name(TRACK['id'])})" in text
    assert "Reference lines, from the track's main `linear_probe` results at 10 % labels" in text
    assert "`imagenet` 77.0 [" in text and "`random` 21.0 [" in text
    lines = text.splitlines()
    row = next(ln for ln in lines if ln.startswith("| simclr ") and "|     150 |" in ln)
    assert [c.strip() for c in row.strip("|").split("|")][:5] == ["simclr", "150", "0.25", "600.0 → 315.0",
                                                                   "20.0 → 24.5"]
    assert "(2×3)" in row
    rise = {c[0]: c[1:] for c in ([x.strip() for x in ln.strip("|").split("|")]
                                  for ln in lines[lines.index("#### Steps until the pool k-NN rises by 5 points"):])
            if len(c) == 3}
    assert rise["simclr"] == ["300", "+5.0"] and rise["vicreg"] == ["not within 1200 steps", "+4.0"]
    assert rise["barlowtwins"] == ["— (the pool has no labels)", "—"]
    (verdict,) = [ln for ln in lines if ln.startswith("linear_probe at 10 %: ")]
    flat, rest = verdict.split("; still rising: ")
    assert "`vicreg` (600 → 1200 steps: +0.5 against ±" in flat and "simclr" not in flat
    assert rest.startswith("`simclr` (600 → 1200 steps: +10.0 against ±")
    assert "not decided (no interval at the largest budget): `barlowtwins` (150 → 300 steps: +0.0)" in rest
    assert "Reproduce: `sslbench ablation learning-curve --method barlowtwins,simclr,vicreg --preset smoke`." in text


def test_a_checkpoint_without_diagnostics_shows_dashes_not_nan(tmp_path):
    hashes = _protocols(tmp_path / "protocols")
    for steps in (150, 300):
        record = curve_record("simclr", steps, 0, 0.5, hashes)
        del record["init"]["pretrain"]["diagnostics"]  # made before checkpoints recorded them
        _write(tmp_path / "results", record)
    runs = learning_curve.expand(load_results(tmp_path / "results").ablation)
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in render.budget_table(runs, ["linear_probe"])[2:]]
    assert [row[:5] for row in rows] == [["simclr", "150", "—", "—", "—"], ["simclr", "300", "—", "—", "—"]]


def test_the_verdict_names_the_common_doubling_once():
    trends = [learning_curve.Trend("ae", 600, 1200, 0.001, 0.02), learning_curve.Trend("simclr", 600, 1200, 0.08, 0.02)]
    assert render.flattening_text(trends, "linear_probe", "10 %") == (
        "linear_probe at 10 %: flattened (the last doubling of the budget, 600 → 1200 steps, raised the test "
        "macro-F1 by less than the half-width of the 95 % interval at the largest budget): `ae` (+0.1 against "
        "±2.0); still rising: `simclr` (+8.0 against ±2.0).")
    assert "the last increase of the budget, 500 → 1200 steps," in render.flattening_text(
        [learning_curve.Trend("ae", 500, 1200, 0.0, 0.02)], "linear_probe", "10 %")


def test_without_curve_runs_there_is_no_section(tmp_path):
    assert render.learning_curve_section(render.Page(load_results(tmp_path / "none"), {})) == []


def test_the_figure_plots_each_method_s_means_the_references_and_the_pool_knn_from_its_start(curve, tmp_path,
                                                                                             monkeypatch):
    loaded, known, runs, _ = curve
    caught = {}
    save = figures._save

    def catch(fig, path):
        caught[path.name] = fig
        return save(fig, path)

    monkeypatch.setattr(figures, "_save", catch)
    written = figures.write_figures(loaded, known, tmp_path / "figures")
    name = figures.learning_curve_name(TRACK["id"])
    assert name in {p.name for p in written}
    score_ax, knn_ax = caught[name].axes
    bars = {c.get_label(): c.lines[0] for c in score_ax.containers}
    assert sorted(bars) == ["barlowtwins", "simclr", "vicreg"]
    means = runs.groupby(["init", "steps"])["macro_f1"].mean()
    for init, line in bars.items():
        steps = sorted(runs.loc[runs["init"] == init, "steps"].unique())
        np.testing.assert_allclose(np.log2(line.get_xdata()), np.log2(steps), atol=0.05)  # dodged side by side
        np.testing.assert_allclose(line.get_ydata(), [100 * means[(init, s)] for s in steps])
    refs = {ln.get_label(): ln.get_ydata()[0] for ln in score_ax.get_lines() if "(main grid)" in ln.get_label()}
    assert refs == pytest.approx({f"{k} (main grid)": 100 * v for k, v in REFERENCE.items()})
    assert [t.get_text() for t in score_ax.get_xticklabels()] == ["150", "300", "600", "1200"]
    knn = {ln.get_label(): ln for ln in knn_ax.get_lines() if not ln.get_label().startswith("_")}
    assert sorted(knn) == ["simclr", "vicreg"]  # barlowtwins' pool had no labels
    np.testing.assert_allclose(knn["vicreg"].get_ydata(), [100 * VICREG_KNN[b] for b in BUDGETS])
    np.testing.assert_allclose(knn["simclr"].get_ydata(), [100 * (SIMCLR_KNN[(b, 0)] + SIMCLR_KNN[(b, 1)]) / 2
                                                           for b in BUDGETS])
    starts = [ln for ln in knn_ax.get_lines() if ln.get_markerfacecolor() == "white"]
    assert len(starts) == 2 and all(list(s.get_xdata()) == [75] and list(s.get_ydata()) == [20.0] for s in starts)
    assert [t.get_text() for t in knn_ax.get_xticklabels()] == ["start", "150", "300", "600", "1200"]


def test_the_web_page_shows_the_section_and_its_figure(curve, tmp_path):
    loaded, known, _, _ = curve
    pngs = {p.name: p.read_bytes() for p in figures.write_figures(loaded, known, tmp_path / "figures")}
    page = render_site(loaded, known, pngs)
    assert '<h2 id="learning-curves-score-against-pretraining-budget">' in page
    assert '<img alt="learning curves" src="data:image/png;base64,' in page
    assert "<h4 id=\"steps-until-the-pool-k-nn-rises-by-5-points\">" in page


# ---------------------------------------------------------------- validation


def test_a_curve_result_must_name_the_budget_its_checkpoint_was_pretrained_for(tmp_path):
    hashes = _protocols(tmp_path / "protocols")
    good = curve_record("simclr", 600, 0, 0.5, hashes)
    assert check_ablation(good) == []
    wrong = json.loads(json.dumps(good))
    wrong["init"]["pretrain"]["steps"] = 300
    assert check_ablation(wrong) == [("ablation.steps", "600 but its checkpoint was pretrained for 300 steps "
                                                        "(init.pretrain.steps)")]
    subset = json.loads(json.dumps(good))
    subset["ablation"]["axis"] = "size"
    assert check_ablation(subset) == [("ablation.axis", "a learning_curve run varies 'steps', got 'size'")]
    main = make_result("simclr", "linear_probe", FRACTION, 0, hashes, np.random.default_rng(0))
    assert check_ablation(main) == []
    assert check_ablation({**main, "ablation": good["ablation"]}) == [
        ("ablation", "only variance_vs_size, learning_curve, continued_recipe, positives results carry it")]
    assert check_ablation({**good, "ablation": None}) == [("ablation", "a learning_curve result must say what it varied")]


def test_a_curve_result_lies_in_its_budget_s_folder_and_validates(tmp_path):
    hashes = _protocols(tmp_path / "protocols")
    record = curve_record("simclr", 600, 0, 0.5, hashes)
    # The metrics as the run made them, consistent with their confusion matrices.
    record["metrics"] = make_result("simclr", "linear_probe", FRACTION, 0, hashes, np.random.default_rng(0))["metrics"]
    path = _write(tmp_path / "results", record)
    assert path.relative_to(tmp_path / "results").parts[1:6] == ("simclr", "learning_curve", "steps-600",
                                                                  "linear_probe", "10pct")
    known = known_protocol_hashes(tmp_path / "protocols")
    assert validate_paths([tmp_path / "results"], known)[0] == []
    del record["ablation"]["steps"]
    path.write_text(json.dumps(record))
    problems, _ = validate_paths([path], known)
    assert [(p.field, p.message) for p in problems] == [("ablation", "'steps' is a required property")]


def test_the_section_lists_each_method_s_hyper_parameters_with_the_batch_it_ran_at(tmp_path):
    hashes = _protocols(tmp_path / "protocols")
    for steps in (150, 300):
        r = curve_record("barlowtwins", steps, 0, 0.3, hashes)
        r["init"]["pretrain"].update({"hparams": {"lr": 0.3, "batch_size": 256, "proj_output_dim": 256},
                                      "global_batch_size": 64, "batch_size": 64, "positives": "temporal:4"})
        _write(tmp_path / "results", r)
    text = "\n".join(render.learning_curve_section(render.Page(load_results(tmp_path / "results"),
                                                               known_protocol_hashes(tmp_path / "protocols"))))
    line = "- `barlowtwins`: batch_size 64, lr 0.3, positives temporal:4, proj_output_dim 256"
    assert text.count(line) == 1  # the same settings at both budgets: one line, the run's batch not the default
    assert "as their checkpoints recorded them" in text

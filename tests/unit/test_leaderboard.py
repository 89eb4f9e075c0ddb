"""The leaderboard on fixture results: golden markdown, determinism, figures, validation errors,
duplicates, protocol-hash separation, nested statistics (pairing, the Holm family, conditional cells),
`--check`, and no torch import."""
from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main as cli_main
from leaderboard import render
from leaderboard.errors import ResultsError
from leaderboard.load import load_results
from leaderboard.results import PACKAGE_DIR, results_label
from leaderboard.validate import validate_paths
from protocols.spec import known_protocol_hashes

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "fixtures" / "leaderboard" / "expected.md"

CLASSES = ["4CH", "LVOT", "RVOT", "3VV", "3VT"]
TEST_SUPPORT = [24, 18, 18, 16, 14]
VAL_SUPPORT = [12, 9, 9, 8, 7]
TRACK = {"id": "synthetic-resnet18-64px-smoke", "pretrain_dataset": "synthetic", "downstream_dataset": "synthetic",
         "backbone": "resnet18", "resolution": 64, "preset": "smoke"}
INITS = {"barlowtwins": ("ssl", "information-theoretic", 0.78), "simclr": ("ssl", "contrastive", 0.72),
         "vicreg": ("ssl", "information-theoretic", 0.75), "imagenet": ("baseline", None, 0.68),
         "random": ("baseline", None, 0.42)}
PROTOCOL_TOML = {"linear_probe": 'version = 1\nfractions = [0.01, 0.1, 1.0]\nseeds = 5\n[probe]\nC = [0.01, 0.1, 1.0]\n',
                 "finetune": 'version = 1\nfractions = [0.01, 0.1, 1.0]\nseeds = 5\n[train]\nepochs = 3\nlr = 0.001\n'}
FRACTIONS = {0.01: -0.22, 0.1: -0.08, 1.0: 0.0}
SEEDS = range(5)
PRETRAIN_SEEDS = range(3)
SINGLE_RUN = "simclr"  # pretrained once: its cells are conditional (†) and untested


def canonical_sha256(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_protocols(root: Path) -> dict[str, str]:
    import tomllib

    root.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for name, text in PROTOCOL_TOML.items():
        (root / f"{name}.toml").write_text(text)
        hashes[name] = canonical_sha256(tomllib.loads(text))
    return hashes


def confusion(rng: np.random.Generator, support: list[int], skill: float) -> np.ndarray:
    """Each true class is predicted right with probability ≈ skill, wrong ones spread over the others."""
    k = len(support)
    cm = np.zeros((k, k), dtype=int)
    for c, n in enumerate(support):
        p = float(np.clip(skill + rng.normal(0, 0.06), 0.05, 0.99))
        right = rng.binomial(n, p)
        wrong = rng.multinomial(n - right, rng.dirichlet(np.ones(k - 1)))
        cm[c, c] = right
        cm[c, [j for j in range(k) if j != c]] = wrong
    return cm


def split_metrics(cm: np.ndarray) -> dict:
    tp = np.diag(cm)
    support, predicted = cm.sum(1), cm.sum(0)
    f1 = [2 * t / (s + p) if s + p else 0.0 for t, s, p in zip(tp, support, predicted, strict=True)]
    return {"macro_f1": round(float(np.mean(f1)), 6), "balanced_accuracy": round(float(np.mean(tp / support)), 6),
            "accuracy": round(float(tp.sum() / cm.sum()), 6),
            "per_class_f1": {c: round(float(v), 6) for c, v in zip(CLASSES, f1, strict=True)},
            "confusion_matrix": cm.tolist(), "n": int(cm.sum())}


def run_offset(init: str, pretrain_seed: int) -> float:
    """What one pretraining run adds to its init's skill: runs differ; imagenet has one set of weights."""
    if INITS[init][0] == "baseline" and init == "imagenet":
        return 0.0
    return float(np.random.default_rng([sum(map(ord, init)), pretrain_seed]).normal(0, 0.03))


DIAGNOSTICS = {"encoder_change": 0.42, "before": {"embedding_std": 0.61, "effective_rank": 670.0, "knn_macro_f1": 0.13},
               "after": {"embedding_std": 0.7, "effective_rank": 21.0, "knn_macro_f1": 0.24}, "problems": []}


def make_result(init: str, protocol: str, fraction: float, seed: int, hashes: dict[str, str],
                rng: np.random.Generator, track: dict = TRACK, pretrain_seed: int = 0) -> dict:
    kind, family, quality = INITS[init]
    # Fine-tuning helps most where the init is poor; every init loses at few labels.
    skill = quality + FRACTIONS[fraction] + (0.06 if protocol == "finetune" else 0.0) \
        + (0.12 if protocol == "finetune" and init == "random" else 0.0) + run_offset(init, pretrain_seed)
    job = {"init": init, "protocol": protocol, "fraction": fraction, "pretrain_seed": pretrain_seed, "seed": seed}
    made = kind == "ssl" or init == "random"
    return {
        "schema_version": 2,
        "job": {"key": canonical_sha256([track["id"], job]), **job},
        "track": dict(track),
        "protocol": {"name": protocol, "version": 1, "hash": hashes[protocol]},
        "init": {"name": init, "kind": kind, "family": family,
                 "checkpoint_hash": canonical_sha256(["ckpt", init, pretrain_seed]) if made else None,
                 "pretrain": {"steps": 150 if kind == "ssl" else 0, "seed": pretrain_seed,
                              "diagnostics": DIAGNOSTICS if kind == "ssl" else
                              {**DIAGNOSTICS, "encoder_change": 0.0, "after": DIAGNOSTICS["before"]}}
                 if made else None},
        "class_names": list(CLASSES),
        "metrics": {"val": split_metrics(confusion(rng, VAL_SUPPORT, skill)),
                    "test": split_metrics(confusion(rng, TEST_SUPPORT, skill))},
        "train": {"n_train": max(5, int(600 * fraction))},
        "provenance": {
            "git_sha": "3f2c1a9b7d5e4f60718293a4b5c6d7e8f9012345", "git_dirty": False,
            "dataset_fingerprints": {"downstream": "d0wn5tream0123456789",
                                     **({"pretrain": "pre7rain0123456789"} if kind == "ssl" else {})},
            "packages": {"torch": "2.14.1", "lightly": "1.6.0"},
            "device": "NVIDIA H100 80GB HBM3" if protocol == "finetune" else "cpu",
            "gpu": protocol == "finetune",
            "wall_time_s": round(30.0 + 300.0 * fraction + seed, 1),
            "date": "2026-11-25T12:00:00+00:00",
            "command": f"sslbench bench --method {init} --preset smoke",
        },
    }


def result_path(root: Path, result: dict) -> Path:
    job = result["job"]
    return (root / result["track"]["id"] / job["init"] / job["protocol"] / f"{job['fraction'] * 100:g}pct"
            / f"pretrain-seed{job['pretrain_seed']}" / f"seed{job['seed']}.json")


def write_result(root: Path, result: dict, path: Path | None = None) -> Path:
    path = path or result_path(root, result)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return path


def fixture_jobs(inits=tuple(INITS), protocols=("linear_probe", "finetune"), fractions=tuple(FRACTIONS)):
    """(init, protocol, fraction, pretraining seed, seed) as the grid makes them: 3 pretraining seeds
    (simclr: 1) × 5 seeds, the probe once per pretraining seed at 100 % (every seed has that subset),
    and simclr's fine-tuning at 100 % with one seed only (the "no interval" cell)."""
    for init in inits:
        for protocol in protocols:
            for fraction in fractions:
                for ps in (PRETRAIN_SEEDS if init != SINGLE_RUN else [0]):
                    for s in SEEDS:
                        if protocol == "linear_probe" and fraction == 1.0 and s > 0:
                            continue
                        if (init, protocol, fraction) == (SINGLE_RUN, "finetune", 1.0) and s > 0:
                            continue
                        yield init, protocol, fraction, ps, s


def make_fixture(root: Path, seed: int = 0, protocols=("linear_probe", "finetune"), fractions=tuple(FRACTIONS),
                 inits=tuple(INITS)) -> tuple[Path, Path]:
    """Results folder and protocols folder: every job of `fixture_jobs`, plus one ablation run."""
    rng = np.random.default_rng(seed)
    hashes = write_protocols(root / "protocols")
    results = root / "results"
    for init, protocol, fraction, ps, s in fixture_jobs(inits, protocols, fractions):
        write_result(results, make_result(init, protocol, fraction, s, hashes, rng, pretrain_seed=ps))
    if "linear_probe" in protocols:
        ablation = make_result("barlowtwins", "linear_probe", 0.01, 0, hashes, rng)
        ablation["ablation"] = {"axis": "diversity", "level": 0, "subjects": 4, "videos": 8, "frames": 256,
                                "eval_protocol": "linear_probe", "eval_protocol_hash": hashes["linear_probe"]}
        ablation["job"]["protocol"] = ablation["protocol"]["name"] = "variance_vs_size"
        (root / "protocols" / "variance_vs_size.toml").write_text("version = 1\n")
        hashes["variance_vs_size"] = canonical_sha256({"version": 1})
        ablation["protocol"]["hash"] = hashes["variance_vs_size"]
        # The ablation's own layout:
        # <track>/<init>/variance_vs_size/<subset>/<eval protocol>/<fraction>/pretrain-seed<p>/seed<k>.json
        write_result(results, ablation, results / TRACK["id"] / "barlowtwins" / "variance_vs_size" / "diversity-L0"
                     / "linear_probe" / "1pct" / "pretrain-seed0" / "seed0.json")
    return results, root / "protocols"


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory) -> tuple[Path, Path]:
    return make_fixture(tmp_path_factory.mktemp("fixture"))


@pytest.fixture(scope="module")
def generated(fixture_dirs, tmp_path_factory) -> tuple[str, Path]:
    """The fixture's leaderboard, written once into a folder that held a stale figure; its results beside
    it as `fixture/results`, as `make golden` lays them out (the page names the folder)."""
    results, protocols = fixture_dirs
    out_dir = tmp_path_factory.mktemp("generated")
    results = shutil.copytree(results, out_dir / "fixture" / "results")
    (out_dir / "figures").mkdir()
    (out_dir / "figures" / "f1_vs_fraction_old-track_finetune.png").write_bytes(b"old")
    return generate(results, protocols, out_dir / "LEADERBOARD.md"), out_dir


def leaderboard(args: list[str]) -> int:
    return cli_main(["leaderboard", *args])


def generate(results: Path, protocols: Path, out: Path) -> str:
    assert leaderboard(["--results", str(results), "--out", str(out), "--protocols", str(protocols)]) == 0
    return out.read_text()


# ---------------------------------------------------------------- rendering


def test_golden_markdown(generated):
    text, _ = generated
    assert text == GOLDEN.read_text(), "after an intended change run `make golden` and review its diff"


def test_the_page_names_its_results_folder_the_same_on_every_machine(tmp_path):
    assert results_label(PACKAGE_DIR / "results", tmp_path) == "leaderboard/results"  # in every clone
    assert results_label(tmp_path / "study" / "results", tmp_path / "study") == "results"  # beside its page
    assert results_label(tmp_path / "a" / "results", tmp_path / "b") == "../a/results"
    page = render.header_section(render.Page(load_results(tmp_path / "none"), {}, "results"))
    assert "under `results/`" in page[2] and "CI regenerates" not in page[2]  # a private page: no CI of ours
    assert "`results/`), then" in page[4]
    repo = render.header_section(render.Page(load_results(tmp_path / "none"), {}))
    assert "under `leaderboard/results/`" in repo[2] and "CI regenerates it" in repo[2]


FIXTURE_FILES = len(list(fixture_jobs())) + 1  # + the ablation run


def test_markdown_shows_every_part(generated):
    text, _ = generated
    for part in ["### linear_probe (v1", "### finetune (v1", "| init ", "Δ vs imagenet", "Holm-adjusted",
                 "paired t-test over the pretraining runs' mean differences", "(3×5)", "(3×1)", "(1×5)",
                 "<details><summary>Balanced accuracy and accuracy", "### Across tasks", "No rank test",
                 "hierarchical bootstrap", "IQM macro-F1", "P(> imagenet)", "### Did pretraining learn?",
                 "### How to read track", "## Provenance", "GPU-hours",
                 "`make bench METHOD=barlowtwins PRESET=smoke`",
                 "1 ablation runs (variance_vs_size) are shown in their own section"]:
        assert part in text, part
    assert "Friedman" not in text.replace("Friedman/Nemenyi test assumes", "")  # no rank test within a track
    # simclr at 100 % has one run (fine-tuning: one seed; the probe: one run per pretraining seed), and
    # the ablation one: their values, and no interval (× 3 metric tables for the first two).
    assert text.count("(1×1, no interval)") == 3 + 3 + 1
    # Exactly one bold cell per fraction column of each metric table (2 protocols × 3 metrics × 3 fractions).
    assert text.count("**") // 2 - text.count("**What varies.**") - text.count("**Intervals.**") \
        - text.count("**Tests.**") - text.count("**No rank test.**") - text.count("**† one pretraining run**") \
        - text.count("**No SSL init beats imagenet**") == 2 * 3 * 3
    assert "variance_vs_size 1 %" not in text.split("## Provenance")[0]
    # The single-run init: † on its cells, named in the note, never tested.
    simclr_delta = [line for line in text.splitlines() if line.startswith("| simclr (contrastive)") and "+" in line]
    assert simclr_delta and all("p=" not in line and "†" in line for line in simclr_delta)
    assert "**† one pretraining run** (`simclr`)" in text


def test_figures_are_written_linked_and_stale_ones_removed(generated):
    text, tmp_path = generated
    linked = sorted(line.split("](figures/")[1].rstrip(")") for line in text.splitlines() if "](figures/" in line)
    written = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert linked == written and len(written) == 4  # f1 × 2 protocols, per-class, variance-vs-size
    for name in written:
        assert (tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_results_give_identical_bytes(fixture_dirs, generated, tmp_path):
    results, protocols = fixture_dirs
    first, first_dir = generated
    # The same files copied in reverse order into another folder, laid out beside the page as `generated`'s.
    other = tmp_path / "b" / "fixture" / "results"
    for path in sorted(results.rglob("*.json"), reverse=True):
        target = other / path.relative_to(results)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    second = generate(other, protocols, tmp_path / "b" / "LEADERBOARD.md")
    assert first == second
    figs_a = {p.name: p.read_bytes() for p in (first_dir / "figures").iterdir()}
    figs_b = {p.name: p.read_bytes() for p in (tmp_path / "b" / "figures").iterdir()}
    assert figs_a == figs_b


def test_without_imagenet_there_is_no_delta_and_no_probability_of_improvement(tmp_path):
    results, protocols = make_fixture(tmp_path, protocols=("finetune",), inits=("barlowtwins", "simclr", "random"))
    text = generate(results, protocols, tmp_path / "LEADERBOARD.md")
    assert "No `imagenet` results in this table, so no Δ vs imagenet init." in text
    ranking = text[text.index("### Across tasks"):text.index("### Did pretraining learn?")]
    assert ranking.count(" — |") == 3 and "| Δ vs imagenet" not in text
    # Only the tests against random are left: barlowtwins' 3 fractions (simclr has one pretraining run).
    assert "| Δ vs random" in text and "(3 tests:" in text


def test_a_cell_not_run_is_marked_and_its_init_not_summarised(tmp_path):
    results, protocols = make_fixture(tmp_path)
    for path in (results / TRACK["id"] / "vicreg" / "linear_probe" / "1pct").rglob("*.json"):
        path.unlink()
    text = generate(results, protocols, tmp_path / "LEADERBOARD.md")
    assert "— (not run)" in text
    assert "- not summarised: `vicreg` has no results for linear_probe 1 %" in text


def test_a_run_whose_features_did_not_move_towards_the_planes_is_noted_with_its_gain(tmp_path):
    results, protocols = make_fixture(tmp_path)
    for path in (results / TRACK["id"] / "vicreg").rglob("pretrain-seed1/*.json"):
        record = json.loads(path.read_text())
        diag = record["init"]["pretrain"]["diagnostics"]
        diag["after"] = {**diag["after"], "knn_macro_f1": 0.146}  # +1.6 points over 0.13: below the 2-point bar
        path.write_text(json.dumps(record, indent=1))
    text = generate(results, protocols, tmp_path / "LEADERBOARD.md")
    section = text[text.index("### Did pretraining learn?"):]
    section = section[:section.index("\n#")]
    noted = [line for line in section.splitlines() if "no better than before pretraining" in line]
    assert len(noted) == 1 and noted[0].startswith("| vicreg") and "|                  1 |" in noted[0]
    assert "k-NN macro-F1 +1.6 points (< 2)" in noted[0]
    # 11 points (the other runs) is a gain; `random` never gains (it is the "before") and is not noted.
    assert not any("no better" in line for line in section.splitlines() if line.startswith("| random"))


def test_a_recorded_did_not_move_is_dropped_when_the_pool_knn_changed_and_kept_when_it_did_not(tmp_path):
    results, protocols = make_fixture(tmp_path)
    stale = "the encoder did not move: relative weight change 7.58e-03 < 0.01 (the optimiser's steps are too small)"
    # seed 0 keeps the fixture's 11-point gain; seed 1 gains 1.6; seed 2 falls by 8 (its features moved, down)
    for seed, knn_after in ((0, None), (1, 0.146), (2, 0.05)):
        for path in (results / TRACK["id"] / "vicreg").rglob(f"pretrain-seed{seed}/*.json"):
            record = json.loads(path.read_text())
            diag = record["init"]["pretrain"]["diagnostics"]
            diag["problems"] = [stale]
            if knn_after is not None:
                diag["after"] = {**diag["after"], "knn_macro_f1": knn_after}
            path.write_text(json.dumps(record, indent=1))
    text = generate(results, protocols, tmp_path / "LEADERBOARD.md")
    section = text[text.index("### Did pretraining learn?"):]
    rows = {line.split("|")[2].strip(): line for line in section[:section.index("\n#")].splitlines()
            if line.startswith("| vicreg")}
    assert rows["0"].split("|")[-2].strip() == "—"
    assert "did not move" in rows["1"] and "k-NN macro-F1 +1.6 points (< 2)" in rows["1"]
    assert "did not move" not in rows["2"] and "k-NN macro-F1 -8.0 points (< 2)" in rows["2"]


def _track_deltas(results: Path, protocols: Path):
    from leaderboard import analysis

    tables = analysis.tables(load_results(results).main, known_protocol_hashes(protocols))
    return analysis.deltas(tables, "macro_f1")


def test_deltas_pair_jobs_on_pretraining_seed_and_seed_and_test_the_pretraining_runs(tmp_path):
    from scipy import stats as sps

    results, protocols = make_fixture(tmp_path, protocols=("linear_probe",), fractions=(0.1,),
                                      inits=("vicreg", "imagenet"))
    runs = load_results(results).main
    own = runs[runs["init"] == "vicreg"].set_index(["pretrain_seed", "seed"])["macro_f1"]
    ref = runs[runs["init"] == "imagenet"].set_index(["pretrain_seed", "seed"])["macro_f1"]
    diff = (own - ref).groupby(level=0).mean()  # per pretraining run: the mean paired difference
    d = _track_deltas(results, protocols)[("imagenet", "linear_probe", "vicreg", 0.1)]
    assert d.pretrain_runs == 3 and d.pairs == 15 and d.comparison.diff.n == 3
    assert d.comparison.diff.mean == pytest.approx(diff.mean())
    assert d.comparison.p == pytest.approx(sps.ttest_1samp(diff.to_numpy(), 0.0).pvalue)
    # A job of the reference with another seed's result breaks the pairing: the wrong value would show.
    moved = results / TRACK["id"] / "imagenet" / "linear_probe" / "10pct" / "pretrain-seed1" / "seed2.json"
    record = json.loads(moved.read_text())
    record["job"]["pretrain_seed"] = 2
    record["job"]["seed"] = 7
    moved.unlink()
    write_result(results, record)
    d2 = _track_deltas(results, protocols)[("imagenet", "linear_probe", "vicreg", 0.1)]
    assert d2.pairs == 14  # (1, 2) lost its partner, (2, 7) has none


def test_the_holm_family_is_every_test_against_imagenet_or_random_in_the_track(tmp_path):
    from leaderboard import stats

    results, protocols = make_fixture(tmp_path)
    deltas = _track_deltas(results, protocols)
    tested = {k: d for k, d in deltas.items() if d.tested}
    # Against imagenet, 4 inits × 2 protocols × 3 fractions, but simclr (one pretraining run) is never
    # tested: 3 × 6 = 18. Against random, the SSL methods only: barlowtwins and vicreg, 2 × 6 = 12.
    vs = {ref: {k for k in tested if k[0] == ref} for ref in ("imagenet", "random")}
    assert len(vs["imagenet"]) == 18 and len(vs["random"]) == 12 and len(tested) == 30
    assert not any(k[2] == SINGLE_RUN for k in tested)
    assert {k[2] for k in vs["random"]} == {"barlowtwins", "vicreg"}
    assert ("random", "finetune", "simclr", 0.01) in deltas  # Δ shown, conditional, not tested
    keys = list(tested)
    expected = stats.holm([tested[k].comparison.p for k in keys])
    assert [tested[k].p_holm for k in keys] == pytest.approx(list(expected))
    # Holm over the track, not per column or reference: the smallest p is multiplied by the family size.
    smallest = min(keys, key=lambda k: tested[k].comparison.p)
    assert tested[smallest].p_holm == pytest.approx(min(1.0, 30 * tested[smallest].comparison.p))
    text = generate(results, protocols, tmp_path / "LEADERBOARD.md")
    assert "(30 tests: all protocols, fractions and inits)" in text
    # The page's Δ vs random table lists the SSL methods, each with the same cells as the analysis.
    table = text[text.index("| Δ vs random"):]
    rows = [line for line in table[:table.index("\n\n")].splitlines()[2:]]
    assert [r.split("|")[1].strip().split(" ")[0] for r in rows] == ["barlowtwins", "simclr", "vicreg"]
    vicreg = deltas[("random", "finetune", "vicreg", 0.01)]  # the first table on the page
    assert f"+{100 * vicreg.comparison.diff.mean:.1f} [" in rows[2]


def test_each_track_opens_with_its_answer_before_its_data_and_tables(generated, tmp_path):
    import dataclasses

    from leaderboard import analysis

    text, _ = generated
    answer = text.index("### The answer")
    assert answer < text.index("### Data") < text.index("### linear_probe (v1")
    block = text[answer:text.index("### Data")]
    rows = [line for line in block.splitlines() if line.startswith("| finetune") or line.startswith("| linear_probe")]
    assert len(rows) == 2 * 3  # protocols × label fractions
    # barlowtwins is the best init everywhere in the fixture; none of its Δs vs imagenet survives Holm.
    assert all("| barlowtwins " in r and "(the best init)" in r and r.rstrip(" |").endswith("no") for r in rows)
    assert "**No SSL init beats imagenet** at any label fraction" in block

    # Where a Δ vs imagenet is a significant win, the answer names it, in its row and below.
    results, protocols = make_fixture(tmp_path)
    tables = analysis.tables(load_results(results).main, known_protocol_hashes(protocols))
    deltas = analysis.deltas(tables, "macro_f1")
    key = ("imagenet", "linear_probe", "vicreg", 0.01)
    deltas[key] = dataclasses.replace(deltas[key], p_holm=0.001)
    lines = render.answer_section([t for t in tables if t.key.track == TRACK["id"]], deltas)
    row = next(line for line in lines if line.startswith("| linear_probe") and "1 %" in line)
    assert row.rstrip(" |").endswith("vicreg")
    assert any(line.startswith("**An SSL init beats imagenet** where the table says so: vicreg at 1 % (linear_probe)")
               for line in lines)
    # A best init that the track does not test against random shows the paired interval only.
    only_baselines = make_fixture(tmp_path / "baselines", inits=("imagenet", "random"))
    tables = analysis.tables(load_results(only_baselines[0]).main, known_protocol_hashes(only_baselines[1]))
    lines = render.answer_section(tables, analysis.deltas(tables, "macro_f1"))
    assert "(not tested)" in lines[6] and lines[-2] == "No SSL init on this track yet: only the baselines are compared."


def test_a_difference_that_never_varies_says_so_instead_of_a_p_value(tmp_path):
    results, protocols = make_fixture(tmp_path, protocols=("linear_probe",), fractions=(1.0,),
                                      inits=("vicreg", "imagenet"))
    for path in (results / TRACK["id"] / "vicreg").rglob("seed*.json"):  # vicreg = imagenet + 0.05 in every run
        record = json.loads(path.read_text())
        job = record["job"]
        twin = json.loads((results / TRACK["id"] / "imagenet" / "linear_probe" / "100pct"
                           / f"pretrain-seed{job['pretrain_seed']}" / f"seed{job['seed']}.json").read_text())
        record["metrics"] = twin["metrics"]
        path.write_text(json.dumps(record))
    text = generate(results, protocols, tmp_path / "LEADERBOARD.md")
    assert "+0.0 (no variation: every replicate differs by the same amount)" in text
    assert "p=" not in text.split("| Δ vs imagenet")[1].split("<details>")[0]


def test_results_of_two_protocol_hashes_never_share_a_table(tmp_path):
    results, protocols = make_fixture(tmp_path, protocols=("linear_probe",))
    # The protocol changes (version 2); two inits are rerun under it at 10 % for pretraining seeds 0–1
    # only, so pretraining seed 2 still holds version-1 results.
    (protocols / "linear_probe.toml").write_text(PROTOCOL_TOML["linear_probe"].replace("version = 1", "version = 2"))
    import tomllib

    new_hash = canonical_sha256(tomllib.loads((protocols / "linear_probe.toml").read_text()))
    rng = np.random.default_rng(9)
    for init in ("imagenet", "vicreg"):
        for ps in range(2):
            for s in SEEDS:
                result = make_result(init, "linear_probe", 0.1, s, {"linear_probe": new_hash}, rng, pretrain_seed=ps)
                result["protocol"]["version"] = 2
                write_result(results, result)
    text = generate(results, protocols, tmp_path / "LEADERBOARD.md")
    assert text.count("### linear_probe (v") == 2
    v2, v1 = text.index(f"### linear_probe (v2, hash `{new_hash[:12]}`)"), text.index("### linear_probe (v1")
    assert v2 < v1
    new_table, old_table = text[v2:v1], text[v1:text.index("### Across tasks")]
    assert new_table.count("(2×5)") == 3 * 2 and "(3×5)" not in new_table  # 2 inits × 3 metric tables
    assert "earlier version" in old_table and old_table.count("(1×5)") == 3 * 2 + 3 * 2  # + simclr at 1 % and 10 %
    # The summary uses the current version only: 1 task (10 %), 2 inits.
    assert "Tasks: 1 — linear_probe 10 %" in text


def test_no_results_says_so_and_how_to_make_them(tmp_path):
    text = generate(tmp_path / "nothing", tmp_path / "protocols", tmp_path / "LEADERBOARD.md")
    assert "**No results yet.**" in text and "make bench METHOD=vicreg" in text
    assert not (tmp_path / "figures").exists()


def test_section_renderers_are_a_list_a_section_can_join(fixture_dirs, monkeypatch):
    results, protocols = fixture_dirs

    loaded = load_results(results)
    monkeypatch.setattr(render, "SECTIONS",
                        [*render.SECTIONS, lambda page: ["## Ablation", "", f"{len(page.results.ablation)} runs"]])
    text = render.render(loaded, known_protocol_hashes(protocols))
    assert text.endswith("## Ablation\n\n1 runs\n")


# ---------------------------------------------------------------- loading and validation


def test_duplicate_results_for_one_job_are_an_error_naming_both(tmp_path):
    results, _ = make_fixture(tmp_path, protocols=("linear_probe",), fractions=(0.01,))
    original = results / TRACK["id"] / "simclr" / "linear_probe" / "1pct" / "pretrain-seed0" / "seed2.json"
    copy_path = results / "resubmitted" / TRACK["id"] / "simclr" / "linear_probe" / "1pct" / "pretrain-seed0" / "seed2.json"
    copy_path.parent.mkdir(parents=True)
    copy_path.write_bytes(original.read_bytes())
    with pytest.raises(ResultsError, match="duplicate results for one job") as err:
        load_results(results)
    assert str(original) in str(err.value) and str(copy_path) in str(err.value)
    problems, _ = validate_paths([results], known_protocol_hashes(tmp_path / "protocols"))
    dup = [p for p in problems if p.field == "job"]
    assert sorted(p.path for p in dup) == sorted([str(original), str(copy_path)])


def test_a_table_never_mixes_runs_made_with_different_preset_overrides(tmp_path):
    results, protocols = make_fixture(tmp_path, protocols=("linear_probe",), fractions=(0.01,))
    known = known_protocol_hashes(protocols)
    files = sorted((results / TRACK["id"]).glob("*/linear_probe/**/*.json"))

    def set_overrides(path: Path, overrides: dict) -> None:
        record = json.loads(path.read_text())
        record["train"]["protocol_overrides"] = overrides
        path.write_text(json.dumps(record))

    now = {"probe": {"max_iter": 30}}
    for path in files:
        set_overrides(path, {**now, "pretrain_seeds": [0, 1, 2]})
    set_overrides(files[0], {**now, "pretrain_seeds": [0, 1, 2, 3, 4]})  # replicate lists choose jobs only
    assert validate_paths([results], known)[0] == []

    stale = files[1:3]
    for path in stale:
        set_overrides(path, {"probe": {"max_iter": 1000}})  # the preset changed and these were not rerun
    problems, _ = validate_paths([results], known)
    assert sorted(p.path for p in problems) == sorted(map(str, stale))
    assert {p.field for p in problems} == {"train.protocol_overrides"}
    assert ('run with the preset\'s overrides {"probe": {"max_iter": 1000}}, while '
            f'{len(files) - 2} results of track {TRACK["id"]}, protocol linear_probe were run with '
            '{"probe": {"max_iter": 30}}') in problems[0].message
    assert "PRESET=smoke" in problems[0].message
    # Ablation runs record no overrides: they are never compared with the main tables' runs.
    assert not [p for p in problems if "variance_vs_size" in p.path]


def test_ablation_runs_of_other_subsets_are_not_duplicates_but_must_lie_in_their_folder(tmp_path):
    results, protocols = make_fixture(tmp_path, protocols=("linear_probe",), fractions=(0.01,))
    folder = results / TRACK["id"] / "barlowtwins" / "variance_vs_size"
    result = json.loads((folder / "diversity-L0" / "linear_probe" / "1pct" / "pretrain-seed0" / "seed0.json").read_text())
    result["ablation"]["level"] = 1
    write_result(results, result, folder / "diversity-L1" / "linear_probe" / "1pct" / "pretrain-seed0" / "seed0.json")
    assert validate_paths([results], known_protocol_hashes(protocols))[0] == []
    loaded = load_results(results)
    assert sorted(loaded.ablation["variant"]) == ["diversity-L0/linear_probe", "diversity-L1/linear_probe"]
    assert (loaded.main["variant"] == "").all()
    result["ablation"]["level"] = 2
    misplaced = write_result(results, result, folder / "diversity-L3" / "linear_probe" / "1pct" / "pretrain-seed0"
                             / "seed0.json")
    problems, _ = validate_paths([misplaced], known_protocol_hashes(protocols))
    assert [(p.field, p.message) for p in problems] == [
        ("(path)", "lies at synthetic-resnet18-64px-smoke/barlowtwins/variance_vs_size/diversity-L3/linear_probe/"
                   "1pct/pretrain-seed0/seed0.json but its job says synthetic-resnet18-64px-smoke/barlowtwins/"
                   "variance_vs_size/diversity-L2/linear_probe/1pct/pretrain-seed0/seed0.json")]


def test_an_invalid_result_file_stops_the_leaderboard_with_its_name(tmp_path):
    results, protocols = make_fixture(tmp_path, protocols=("linear_probe",), fractions=(0.01,))
    bad = results / TRACK["id"] / "random" / "linear_probe" / "1pct" / "pretrain-seed0" / "seed0.json"
    result = json.loads(bad.read_text())
    del result["metrics"]["test"]["accuracy"]
    bad.write_text(json.dumps(result))
    with pytest.raises(ResultsError, match="seed0.json: not a valid result file: metrics.test: 'accuracy' is a required"):
        load_results(results)


def test_the_fixture_validates_clean(fixture_dirs):
    results, protocols = fixture_dirs
    problems, n = validate_paths([results], known_protocol_hashes(protocols))
    assert problems == [] and n == FIXTURE_FILES


def _valid(tmp_path: Path, init: str = "vicreg") -> tuple[dict, Path]:
    hashes = write_protocols(tmp_path / "protocols")
    return make_result(init, "linear_probe", 0.1, 3, hashes, np.random.default_rng(0)), tmp_path / "protocols"


def _set(path: str, value):
    def mutate(r: dict) -> None:
        *parents, last = path.split(".")
        target = r
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return mutate


def _bump(path: str, delta: float):
    def mutate(r: dict) -> None:
        *parents, last = path.split(".")
        target = r
        for key in parents:
            target = target[key]
        target[last] = round(min(1.0, max(0.0, target[last] + delta)), 6)
    return mutate


def _cm_row_moved(r: dict) -> None:
    cm = r["metrics"]["test"]["confusion_matrix"]
    cm[0][0] += 1  # one more example than n says, and the metrics no longer match


VALIDATION_CASES = {
    "schema: metric out of range": (_set("metrics.test.macro_f1", 1.5), "metrics.test.macro_f1",
                                    "greater than the maximum"),
    "schema: required field missing": (_set("metrics.val.n", KeyError), "metrics.val", "'n' is a required"),
    "schema: unknown field": (_set("metrics.test.top5", 0.9), "metrics.test", "Additional properties"),
    "schema: provenance missing": (_set("provenance.device", KeyError), "provenance", "'device' is a required"),
    "unknown protocol hash": (_set("protocol.hash", "ab" * 32), "protocol.hash", "not the hash of the current"),
    "unknown protocol": (lambda r: (_set("protocol.name", "probe_v0")(r), _set("job.protocol", "probe_v0")(r)),
                         "protocol.name", "unknown protocol 'probe_v0'"),
    "init name differs from job": (_set("init.name", "simclr"), "init.name", "but job.init is 'vicreg'"),
    "accuracy inconsistent": (_bump("metrics.test.accuracy", -0.05), "metrics.test.accuracy",
                              "but the confusion matrix gives"),
    "balanced accuracy inconsistent": (_bump("metrics.val.balanced_accuracy", 0.05),
                                       "metrics.val.balanced_accuracy", "but the confusion matrix gives"),
    "macro-F1 inconsistent": (_bump("metrics.test.macro_f1", 0.05), "metrics.test.macro_f1",
                              "but the mean of the per-class F1"),
    "per-class F1 inconsistent": (_bump("metrics.test.per_class_f1.LVOT", -0.1), "metrics.test.per_class_f1.LVOT",
                                  "but the confusion matrix gives"),
    "n inconsistent": (_cm_row_moved, "metrics.test.n", "but the confusion matrix counts"),
    "confusion matrix shape": (lambda r: r["metrics"]["test"]["confusion_matrix"].pop(), "metrics.test.confusion_matrix",
                               "must be 5×5"),
    "per-class keys": (lambda r: r["metrics"]["test"]["per_class_f1"].pop("3VT"), "metrics.test.per_class_f1",
                       "must be the class names"),
    "NaN metric": (_set("metrics.val.accuracy", float("nan")), "metrics.val.accuracy", "not a finite number"),
    "checkpoint missing": (_set("init.checkpoint_hash", None), "init.checkpoint_hash", "must name the checkpoint"),
    "schema: results of version 1": (_set("schema_version", 1), "schema_version", "2 was expected"),
    "schema: no pretraining seed": (_set("job.pretrain_seed", KeyError), "job", "'pretrain_seed' is a required"),
    "pretrain fingerprint missing": (_set("provenance.dataset_fingerprints.pretrain", KeyError),
                                     "provenance.dataset_fingerprints.pretrain", "fingerprint of its pretraining"),
    "git SHA unknown": (_set("provenance.git_sha", "unknown"), "provenance.git_sha", "not a git commit SHA"),
    "packages empty": (_set("provenance.packages", {}), "provenance.packages", "is empty"),
    "device empty": (_set("provenance.device", " "), "provenance.device", "is empty"),
    "date not ISO": (_set("provenance.date", "yesterday"), "provenance.date", "not an ISO 8601"),
    "wall time zero": (_set("provenance.wall_time_s", 0), "provenance.wall_time_s", "must be positive"),
}


@pytest.mark.parametrize("case", sorted(VALIDATION_CASES))
def test_every_validation_error_names_file_and_field(tmp_path, case):
    mutate, field, message = VALIDATION_CASES[case]
    result, protocols = _valid(tmp_path)
    root = tmp_path / "results"
    assert validate_paths([write_result(root, copy.deepcopy(result))], known_protocol_hashes(protocols))[0] == []
    mutate(result)
    path = write_result(root, result, result_path(root, make_result("vicreg", "linear_probe", 0.1, 3,
                                                                    {"linear_probe": "0" * 64},
                                                                    np.random.default_rng(0))))
    problems, n = validate_paths([path], known_protocol_hashes(protocols))
    assert n == 1
    assert any(p.path == str(path) and p.field == field and message in p.message for p in problems), problems


def test_validation_of_layout_and_unreadable_files(tmp_path):
    result, protocols = _valid(tmp_path)
    write_result(tmp_path, result, tmp_path / "r" / TRACK["id"] / "vicreg" / "linear_probe" / "1pct"
                 / "pretrain-seed0" / "seed3.json")
    write_result(tmp_path, result, tmp_path / "r" / "vicreg.json")
    broken = tmp_path / "r" / "broken.json"
    broken.write_text("{\"schema_version\": 1,")
    problems, n = validate_paths([tmp_path / "r"], known_protocol_hashes(protocols))
    assert n == 3
    found = {(Path(p.path).name, p.field) for p in problems}
    assert ("seed3.json", "(path)") in found and ("vicreg.json", "(path)") in found
    assert ("broken.json", "(file)") in found
    assert "but its job says synthetic-resnet18-64px-smoke/vicreg/linear_probe/10pct/pretrain-seed0/seed3.json" \
        in str(problems)
    with pytest.raises(ResultsError, match="no such file or folder"):
        validate_paths([tmp_path / "missing"], known_protocol_hashes(protocols))


def test_known_protocol_hashes_agree_with_the_protocol_runner():
    from protocols.spec import PROTOCOLS, load_protocol

    known = known_protocol_hashes()
    for name in PROTOCOLS:
        assert known[name] == load_protocol(name).hash


# ---------------------------------------------------------------- commands


def test_check_passes_when_current_and_fails_with_a_diff_when_stale(tmp_path, capsys):
    results, protocols = make_fixture(tmp_path, protocols=("linear_probe",), fractions=(0.01, 1.0))
    out = tmp_path / "LEADERBOARD.md"
    generate(results, protocols, out)
    args = ["--results", str(results), "--out", str(out), "--protocols", str(protocols), "--check"]
    capsys.readouterr()
    assert leaderboard(args) == 0
    # A new result arrives but the leaderboard is not regenerated.
    extra = make_result("simclr", "linear_probe", 0.01, 7, {"linear_probe": canonical_sha256(
        __import__("tomllib").loads(PROTOCOL_TOML["linear_probe"]))}, np.random.default_rng(5))
    write_result(results, extra)
    assert leaderboard(args) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"--- {out} (committed)\n+++ {out} (from the results)\n")
    assert "-| simclr (contrastive)" in captured.out and "(1×6)" in captured.out
    assert "is not what the results give; run `make leaderboard`" in captured.err


def test_check_fails_on_an_inconsistent_result_file(tmp_path, capsys):
    results, protocols = make_fixture(tmp_path, protocols=("linear_probe",), fractions=(0.01,))
    path = results / TRACK["id"] / "random" / "linear_probe" / "1pct" / "pretrain-seed0" / "seed1.json"
    result = json.loads(path.read_text())
    result["metrics"]["test"]["accuracy"] = 0.99
    path.write_text(json.dumps(result))
    out = tmp_path / "LEADERBOARD.md"
    generate(results, protocols, out)
    assert leaderboard(["--results", str(results), "--out", str(out), "--protocols", str(protocols), "--check"]) == 1
    assert f"{path}: metrics.test.accuracy: 0.990000 but the confusion matrix gives" in capsys.readouterr().err


def test_validate_command_exit_codes(fixture_dirs, tmp_path, capsys):
    results, protocols = fixture_dirs
    assert cli_main(["validate", str(results), "--protocols", str(protocols)]) == 0
    assert f"{FIXTURE_FILES} result files checked: all valid" in capsys.readouterr().out
    result, protocols2 = _valid(tmp_path)
    result["metrics"]["test"]["accuracy"] = 0.0
    path = write_result(tmp_path / "r", result)
    assert cli_main(["validate", str(path), "--protocols", str(protocols2)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: metrics.test.accuracy:" in out and "1 result files checked: 1 problem(s) in 1 file(s)" in out
    assert cli_main(["validate", str(tmp_path / "missing")]) == 2


def test_leaderboard_and_validate_never_import_torch(fixture_dirs, tmp_path):
    results, protocols = fixture_dirs
    code = (
        "import sys\n"
        "from benchmark.cli import main\n"
        f"assert main(['leaderboard', '--results', {str(results)!r}, '--protocols', {str(protocols)!r},"
        f" '--out', {str(tmp_path / 'L.md')!r}]) == 0\n"
        f"assert main(['validate', {str(results)!r}, '--protocols', {str(protocols)!r}]) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'pytorch_lightning'))\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

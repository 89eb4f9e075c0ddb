"""The data card: which clips have no subject id (the sources), the warning and the card of a cache,
the card each result records (the grid), and how the leaderboard shows it beside the scores."""
from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.cache import prepare, say_skipped
from benchmark.data.spec import parse_dataset_spec
from benchmark.track import backfill_data_cards, track_context
from leaderboard import render, webpage
from leaderboard.load import load_results
from protocols.grid import Init, build_grid, make_track
from protocols.spec import load_protocol
from tests.fake_source import tiny_pool
from tests.unit.test_leaderboard import TRACK, canonical_sha256, make_fixture, make_result

TINY = Path(__file__).parents[1] / "e2e" / "tiny_preset.toml"

CLASSES = ("4CH", "LVOT")


def write_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12), value, np.uint8)).save(path)


def stills(root: Path, with_subjects: bool) -> Path:
    """4 images per class, as `<class>/<image>` or `<class>/<subject>/<image>` (two subjects per class)."""
    for c, name in enumerate(CLASSES):
        for k in range(4):
            below = f"p{c}{k // 2}/img{k}.png" if with_subjects else f"img{k}.png"
            write_png(root / name / below, 40 * c + 10 * k)
    return root


def downstream(spec: str, cache_dir: Path):
    return prepare(parse_dataset_spec(spec, resolution=8, workers=1), "downstream", cache_dir=cache_dir,
                   progress=False)


def test_an_image_folder_of_stills_has_no_subject_ids_and_says_so(tmp_path, capsys):
    cache = downstream(f"imagefolder:{stills(tmp_path / 'flat', False)}", tmp_path / "c")
    assert cache.clips_without_subject == 8 and cache.meta["clips"] == 8
    warning = cache.subject_warning()
    assert warning == (
        f"{cache.meta['spec']}: none of its 8 labelled files has a subject id, so each such file is its own "
        "subject and the train/val/test splits cannot be subject-disjoint (images of one patient may be in "
        "train and test, which inflates the scores); give the subjects with a subject column in the manifest, "
        "one sub-folder per subject, or --subject-pattern")
    assert f"warning    {warning}" in cache.summary().splitlines()
    say_skipped(cache)
    assert warning in capsys.readouterr().err
    card = cache.card()
    assert card["clips_without_subject"] == 8 and card["subjects"] == 8 and card["frames"] == 8
    assert sum(card["splits"][s]["frames"] for s in ("train", "val", "test")) == 8
    assert {name: sum(per.values()) for name, per in card["classes"].items()} == {"4CH": 4, "LVOT": 4}
    # Per class and split, the card counts what the index holds.
    idx = cache.index
    for k, name in enumerate(CLASSES):
        for split, n in card["classes"][name].items():
            assert n == int(((idx["label"] == k) & (idx["split"] == split)).sum())


def test_subject_folders_give_subject_ids_and_no_warning(tmp_path, capsys):
    cache = downstream(f"imagefolder:{stills(tmp_path / 'nested', True)}", tmp_path / "c")
    assert cache.clips_without_subject == 0 and cache.subject_warning() is None
    idx = cache.index
    splits = {s: {"frames": int((idx["split"] == s).sum()), "subjects": int(idx[idx["split"] == s]["subject_id"].nunique())}
              for s in ("train", "val", "test") if (idx["split"] == s).any()}
    classes = {name: {s: int(((idx["label"] == k) & (idx["split"] == s)).sum())
                      for s in ("train", "val", "test") if ((idx["label"] == k) & (idx["split"] == s)).any()}
               for k, name in enumerate(CLASSES)}
    assert cache.card() == {"kind": "imagefolder", "spec": f"imagefolder:{tmp_path / 'nested'}", "frames": 8,
                            "videos": 8, "subjects": 4, "splits": splits, "classes": classes, "clips": 8,
                            "clips_without_subject": 0,
                            # the decode settings, file count and how the files were identified (by
                            # content, or by size and mtime when too large); not the file list's hash
                            # (meta.json has it)
                            "settings": {"crop": "none", "n_files": 8, "identity": "content"}}
    assert "files_sha256" in cache.meta["settings"]
    assert list(cache.card()["splits"]) == [s for s in ("train", "val", "test") if s in splits]
    say_skipped(cache)
    assert "subject-disjoint" not in capsys.readouterr().err


def test_a_manifest_without_a_subject_for_some_rows(tmp_path):
    root = stills(tmp_path / "flat", False)
    rows = [f"{name}/img{k}.png,{name},{f's{k}' if k < 2 else ''}" for name in CLASSES for k in range(4)]
    (root / "labels.csv").write_text("path,label,subject\n" + "\n".join(rows) + "\n")
    cache = downstream(f"csv:{root / 'labels.csv'}", tmp_path / "c")
    assert cache.clips_without_subject == 4  # img2, img3 of each class
    assert "4 of its 8 labelled files have no subject id" in cache.subject_warning()


@pytest.mark.parametrize("zoom", [1.0, 2.0])
def test_the_simulator_card_records_the_settings_its_fingerprint_covers(tmp_path, zoom):
    source = parse_dataset_spec("synthetic", resolution=32, subjects=2, videos_per_subject=1, frames_per_video=2,
                                downstream_subjects=5, downstream_images_per_subject=2, zoom=zoom)
    settings = prepare(source, "downstream", cache_dir=tmp_path, progress=False).card()["settings"]
    assert settings["downstream_subjects"] == 5 and settings["resolution"] == 32
    assert settings["simulator_version"] == source.fingerprint_parts("downstream")["simulator_version"]
    # zoom at its default is left out of the fingerprint (older caches stay valid), so out of the card too
    assert settings.get("zoom") == (None if zoom == 1.0 else 2.0)


def test_a_cache_made_in_memory_has_a_card_with_empty_source_fields(tmp_path):
    card = tiny_pool(tmp_path).card()  # no kind or spec in its metadata: still strings, as the schema wants
    assert (card["kind"], card["spec"], card["frames"], card["videos"], card["subjects"]) == ("", "", 24, 3, 3)
    assert card["splits"] == {"pretrain": {"frames": 24, "subjects": 3}} and card["classes"] == {} and "clips" not in card


def test_the_grid_records_the_cards_of_the_caches_behind_the_fingerprints(tmp_path):
    down = downstream(f"imagefolder:{stills(tmp_path / 'flat', False)}", tmp_path / "c")
    pool = tiny_pool(tmp_path / "pool")
    spec = load_protocol("linear_probe", {"pretrain_seeds": [0], "seeds": [0], "fractions": [1.0]})
    track = make_track("synthetic", "imagefolder:x", "tiny", 8, "smoke")
    made_here = Init(name="vicreg", kind="ssl", backbone="tiny", pretrain_seed=0, pretrain_fingerprint=pool.fingerprint)
    elsewhere = Init(name="simclr", kind="ssl", backbone="tiny", pretrain_seed=0, pretrain_fingerprint="f" * 64)
    imagenet = Init(name="imagenet", kind="baseline", backbone="tiny", pretrain_seed=0)
    jobs = {j.init.name: j for j in build_grid([made_here, elsewhere, imagenet], [spec], track, down, tmp_path, pool)}
    assert jobs["vicreg"].data_cards == {"downstream": down.card(), "pretrain": pool.card()}
    assert jobs["simclr"].data_cards == {"downstream": down.card()}  # another pool: its card is not known here
    assert jobs["imagenet"].data_cards == {"downstream": down.card()}


def card(without_subject: int) -> dict:
    return {"kind": "imagefolder", "spec": "imagefolder:/data/stills", "frames": 40, "videos": 40, "subjects": 40,
            "splits": {"test": {"frames": 8, "subjects": 8}, "train": {"frames": 24, "subjects": 24},
                       "val": {"frames": 8, "subjects": 8}},
            "classes": {"LVOT": {"train": 4, "val": 2, "test": 2}, "4CH": {"train": 20, "val": 6, "test": 6}},
            "clips": 40, "clips_without_subject": without_subject}


POOL_CARD = {"kind": "dicom", "spec": "dicom:/data/cines", "frames": 900, "videos": 30, "subjects": 12,
             "splits": {"pretrain": {"frames": 900, "subjects": 12}}, "classes": {}, "clips": 30,
             "clips_without_subject": 0}


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return make_fixture(tmp_path_factory.mktemp("fixture"), protocols=("linear_probe",),
                        inits=("vicreg", "imagenet"))


def page(results: Path, protocols_dir: Path, downstream_card: dict | None) -> tuple[str, str]:
    if downstream_card is not None:
        for path in results.rglob("*.json"):
            record = json.loads(path.read_text())
            prov = record["provenance"]
            prov["data"] = {"downstream": downstream_card,
                            **({"pretrain": POOL_CARD} if "pretrain" in prov["dataset_fingerprints"] else {})}
            prov["skipped_files"] = {"downstream": 3, **({"pretrain": 0} if "pretrain" in prov["data"] else {})}
            path.write_text(json.dumps(record))
    hashes = {p.stem: _hash(p) for p in protocols_dir.glob("*.toml")}
    loaded = load_results(results)
    return render.render(loaded, hashes), webpage.render_site(loaded, hashes, {})


def _hash(path: Path) -> str:
    return canonical_sha256(tomllib.loads(path.read_text()))


def test_the_card_shows_both_roles_and_marks_scores_whose_splits_are_not_subject_disjoint(fixture, tmp_path):
    results, protocols_dir = fixture
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    md, site = page(copy, protocols_dir, card(without_subject=40))
    data = md[md.index("### Data"):md.index("### linear_probe")]
    row = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in data.splitlines()
           if line.startswith("| ") and not line.startswith("| class ")}
    assert row["source (kind)"] == ["`dicom:/data/cines` (dicom)", "`imagefolder:/data/stills` (imagefolder)"]
    assert row["frames"] == ["900", "40"] and row["videos"] == ["30", "40"]
    assert row["subjects"] == ["12", "40 (train 24, val 8, test 8)"]
    assert row["subject ids"] == ["given for every video/image",
                                  "**none for 40 of 40 videos/images** (each its own subject) ‡"]
    assert row["classes (labelled frames)"] == ["unlabelled", "4CH 32, LVOT 8"]  # in the results' class order
    assert row["skipped files"] == ["0", "3"]
    assert "| 4CH     |      20 |     6 |      6 |    32 |" in data
    # Beside the scores: the mark on every fraction column and its footnote under the table.
    table = md[md.index("### linear_probe"):md.index("### Across tasks")]
    header = next(line for line in table.splitlines() if line.startswith("| init"))
    assert header.count("‡") == 3
    assert "‡ **Splits not subject-disjoint**: the downstream data (`imagefolder:/data/stills`)" in table
    assert "Splits not subject-disjoint" in site and "macro-F1 (%)‡" in site and ">Data</h3>" in site


def test_subject_disjoint_data_gets_no_mark_and_older_results_say_not_recorded(fixture, tmp_path):
    results, protocols_dir = fixture
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    md, _ = page(copy, protocols_dir, card(without_subject=0))
    assert "‡" not in md and "given for every video/image" in md
    old, _ = page(results, protocols_dir, None)
    data = old[old.index("### Data"):old.index("### linear_probe")]
    assert "| frames                    | not recorded" in data and "‡" not in old
    assert "Source settings" not in old
    assert f"`{TRACK['pretrain_dataset']}`" in data



def recorded_fingerprint(results: Path, role: str) -> str:
    (fp,) = {json.loads(p.read_text())["provenance"]["dataset_fingerprints"].get(role) for p in results.rglob("*.json")} - {None}
    return fp


def test_the_card_shows_the_source_settings_once_per_distinct_set(fixture, tmp_path, monkeypatch):
    results, protocols_dir = fixture
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    pre, down = (recorded_fingerprint(copy, role)[:12] for role in ("pretrain", "downstream"))
    shared = {"zoom": 2.0, "subjects": 48, "include_other": False}
    monkeypatch.setitem(POOL_CARD, "settings", shared)
    md, site = page(copy, protocols_dir, {**card(without_subject=0), "settings": shared})
    data = md[md.index("### Data"):md.index("### linear_probe")]
    assert [x for x in data.splitlines() if x.startswith("Source settings")] == [
        f"Source settings of pretraining `{pre}` and downstream `{down}`: `include_other=false`, `subjects=48`, `zoom=2.0`."]
    assert "zoom=2.0" in site
    monkeypatch.setitem(POOL_CARD, "settings", {"stride": 2})
    md, _ = page(copy, protocols_dir, {**card(without_subject=0), "settings": shared})
    assert [x for x in md.splitlines() if x.startswith("Source settings")] == [
        f"Source settings of pretraining `{pre}`: `stride=2`.",
        f"Source settings of downstream `{down}`: `include_other=false`, `subjects=48`, `zoom=2.0`."]


def test_backfill_adds_cards_and_the_fields_older_cards_lack_and_nothing_else(tmp_path):
    ctx = track_context(str(TINY), results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                        cache_dir=str(tmp_path / "cache"))
    down, pool = ctx.downstream_cache(), ctx.pretrain_cache()
    folder = ctx.results_dir / ctx.track.id
    rng = np.random.default_rng(0)

    def result(seed: int, fingerprints: dict, data: dict | None) -> Path:
        record = make_result("vicreg", "linear_probe", 1.0, seed, {"linear_probe": "a" * 64}, rng)
        record["provenance"]["dataset_fingerprints"] = fingerprints
        if data is not None:
            record["provenance"]["data"] = data
        path = folder / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
        return path

    old_card = {k: v for k, v in down.card().items() if k != "settings"}
    old_card["spec"] = "as recorded"  # a field the result has keeps its value
    both = {"downstream": down.fingerprint, "pretrain": pool.fingerprint}
    older = result(0, both, {"downstream": old_card})
    oldest = result(1, both, None)
    elsewhere = result(2, {"downstream": "f" * 64}, None)
    before = {p: json.loads(p.read_text()) for p in (older, oldest, elsewhere)}

    assert backfill_data_cards(ctx) == (2, 3)
    after = {p: json.loads(p.read_text()) for p in before}
    assert after[older]["provenance"]["data"] == {"downstream": {**down.card(), "spec": "as recorded"},
                                                  "pretrain": pool.card()}
    assert after[older]["provenance"]["data"]["downstream"]["settings"]["downstream_subjects"] == 12
    assert after[oldest]["provenance"]["data"] == {"downstream": down.card(), "pretrain": pool.card()}
    assert after[elsewhere] == before[elsewhere]  # another cache's results get no card
    for p in (older, oldest):
        strip = [{**r, "provenance": {k: v for k, v in r["provenance"].items() if k not in ("data", "skipped_files")}}
                 for r in (before[p], after[p])]
        assert strip[0] == strip[1]
    assert backfill_data_cards(ctx) == (0, 3)

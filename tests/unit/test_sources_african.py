"""`african_fetal_planes:DIR`: both published layouts (split folders, the Zenodo archive), subjects that combine
country and patient (patient numbers restart per country), the data set's split, and the country as scanner."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.cache import prepare
from benchmark.data.source import Clip, Skipped
from benchmark.data.sources.pixels import prepare_frames
from benchmark.data.spec import parse_dataset_spec
from benchmark.errors import DataError, UserError
from tests.unit.test_sources_images import write_image

PLANES = ["Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax"]
CODES = {"Algeria": "DZA", "Ghana": "GHA", "Malawi": "MWI"}
HEADER = ["Patient_num", "Plane", "Train", "Center", "Image_name"]
SHARED = Path("/work/shared/data/african_fetal_planes")


def african_rows(patients: int = 4) -> list[list[str]]:
    """Rows of a miniature data set: the same patient numbers in every country (as in the real one), the
    first half of each country's patients in train; Ghana without thorax images (as in the real one)."""
    rows = []
    for center, code in CODES.items():
        for p in range(1, patients + 1):
            for k, plane in enumerate(PLANES):
                if center == "Ghana" and plane == "Fetal thorax":
                    continue
                rows.append([str(p), plane, "1" if p <= patients // 2 else "0", center, f"patient{p:03d}_{code}_plane{k}"])
    return rows


def _value(row: list[str]) -> int:
    """Each image's grey level, from its country, patient and plane, so a test can tell images apart."""
    return 40 * list(CODES).index(row[3]) + 8 * int(row[0]) + int(row[4][-1])


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")  # the release's line ends
        w.writerow(header)
        w.writerows(rows)


def make_african_fetal_planes(root: Path, patients: int = 4, layout: str = "split") -> Path:
    """A miniature data set in one of its published layouts: `split` (african_train/African_train.csv +
    PNGs, african_test/…) or `zenodo` (African_planes_database.csv, `Filename`, a folder per country)."""
    rows = african_rows(patients)
    if layout == "split":
        for split, train in (("train", "1"), ("test", "0")):
            mine = [r for r in rows if r[2] == train]
            _write_csv(root / f"african_{split}" / f"African_{split}.csv", HEADER, mine)
            for r in mine:
                write_image(root / f"african_{split}" / f"{r[4]}.png", _value(r), mode="RGB" if r[0] == "1" else "L")
    else:
        _write_csv(root / "African_planes_database.csv", HEADER[:-1] + ["Filename"], rows)
        for r in rows:
            write_image(root / r[3] / f"{r[4]}.png", _value(r), mode="RGB" if r[0] == "1" else "L")
    return root


def clips_of(root: Path) -> list[Clip]:
    source = parse_dataset_spec(f"african_fetal_planes:{root}", resolution=8, workers=1)
    items = list(source.items("downstream"))
    assert all(isinstance(c, Clip) for c in items)
    return items


def test_subjects_combine_country_and_patient_and_the_split_and_country_are_kept(tmp_path):
    root = make_african_fetal_planes(tmp_path / "afp")
    source = parse_dataset_spec(f"african_fetal_planes:{root}", resolution=8, workers=1)
    assert source.class_names("downstream") == PLANES
    clips = clips_of(root)
    assert len(clips) == len(african_rows())
    by_id = {c.video_id: c for c in clips}
    first = by_id["patient001_DZA_plane2"]
    assert first.subject_id == "DZA-001" and first.scanner == "Algeria" and first.split == "train"
    assert first.labels.tolist() == [PLANES.index("Fetal femur")] and first.frames.shape == (1, 8, 8)
    assert int(first.frames[0, 4, 4]) == 8 + 2  # the RGB image's grey, read from its own file
    assert by_id["patient001_GHA_plane0"].subject_id == "GHA-001"  # patient 1 of Ghana is not patient 1 of Algeria
    assert by_id["patient004_MWI_plane3"].split == "test"
    assert {c.scanner for c in clips} == set(CODES)

    cache = prepare(source, "downstream", cache_dir=tmp_path / "cache", progress=False)
    idx = cache.index
    assert idx["subject_id"].nunique() == 3 * 4  # 4 patients in each of 3 countries, not 4 subjects in all
    assert set(idx["split"]) == {"train", "val", "test"}
    assert (idx.groupby("subject_id")["split"].nunique() == 1).all()  # subject-disjoint
    assert set(idx.loc[idx["split"] == "test", "subject_id"].str[-3:]) == {"003", "004"}  # the data set's test
    assert cache.scanners == sorted(CODES)


def test_the_country_is_what_the_cross_scanner_protocol_holds_out(tmp_path):
    from protocols.cross_scanner import folds

    root = make_african_fetal_planes(tmp_path / "afp", patients=6)
    cache = prepare(parse_dataset_spec(f"african_fetal_planes:{root}", resolution=8, workers=1), "downstream",
                    cache_dir=tmp_path / "cache", progress=False)
    made, messages = folds(cache, min_scanners=2)
    assert [f.held_out for f in made] == sorted(CODES) and messages == []
    ghana = next(f for f in made if f.held_out == "Ghana").view.index
    assert set(ghana.loc[ghana["split"] == "test", "scanner"]) == {"Ghana"}
    assert "Ghana" not in set(ghana.loc[ghana["split"].isin(["train", "val"]), "scanner"])


def test_the_zenodo_layout_reads_as_the_split_folders_do(tmp_path):
    split = clips_of(make_african_fetal_planes(tmp_path / "split"))
    zenodo = clips_of(make_african_fetal_planes(tmp_path / "zenodo", layout="zenodo"))

    def key(c: Clip):
        return c.video_id, c.subject_id, c.split, c.scanner, c.labels.tolist(), c.frames.tobytes()

    assert sorted(map(key, zenodo)) == sorted(map(key, split))


def test_a_wrong_folder_or_table_is_refused_with_the_fix(tmp_path):
    with pytest.raises(UserError, match="african_train/African_train.csv.*African_planes_database.csv"):
        parse_dataset_spec(f"african_fetal_planes:{tmp_path}", resolution=8).class_names("downstream")

    root = make_african_fetal_planes(tmp_path / "afp")
    table = root / "african_train" / "African_train.csv"
    table.write_text(table.read_text().replace("Center", "Centre", 1))
    with pytest.raises(DataError, match="'Center'.*did you mean 'Centre'") as err:
        parse_dataset_spec(f"african_fetal_planes:{root}", resolution=8).class_names("downstream")
    assert err.value.path == str(table)

    table.write_text(table.read_text().replace("Centre", "Center", 1).replace(",1,Algeria,", ",yes,Algeria,", 1))
    with pytest.raises(DataError, match="'Train' must be 1 .* line 2 has 'yes'"):
        parse_dataset_spec(f"african_fetal_planes:{root}", resolution=8).class_names("downstream")


def test_a_listed_image_that_is_missing_is_reported(tmp_path):
    root = make_african_fetal_planes(tmp_path / "afp")
    (root / "african_test" / "patient004_MWI_plane3.png").unlink()
    items = list(parse_dataset_spec(f"african_fetal_planes:{root}", resolution=8, workers=1).items("downstream"))
    skipped = [i for i in items if isinstance(i, Skipped)]
    assert [Path(s.path).name for s in skipped] == ["patient004_MWI_plane3.png"]
    assert "African_test.csv" in skipped[0].reason


@pytest.mark.skipif(not SHARED.is_dir(), reason="the real data set is not on this machine")
def test_real_images_grey_and_colour(tmp_path):
    # A greyscale image (Algeria) and a colour one (Egypt's are RGB); the table as the data set writes it.
    originals = sorted((SHARED / "african_train").glob("patient*.png"))
    modes = {p: Image.open(p).mode for p in originals}
    picked = [next(p for p in originals if modes[p] == "L" and "_DZA_" in p.name),
              next(p for p in originals if modes[p] == "RGB" and "_EGY_" in p.name)]
    table = (SHARED / "african_train" / "African_train.csv").read_text().splitlines()
    rows = [ln for ln in table[1:] if ln.split(",")[-1] in {p.stem for p in picked}]
    root = tmp_path / "real"
    (root / "african_train").mkdir(parents=True)
    (root / "african_test").mkdir()
    for p in picked:
        shutil.copy(p, root / "african_train" / p.name)
    (root / "african_train" / "African_train.csv").write_text("\r\n".join(table[:1] + rows) + "\r\n")
    (root / "african_test" / "African_test.csv").write_text(table[0] + "\r\n")
    clips = clips_of(root)
    assert sorted((c.subject_id[:4], c.scanner) for c in clips) == [("DZA-", "Algeria"), ("EGY-", "Egypt")]
    for c, p in zip(sorted(clips, key=lambda c: c.video_id), sorted(picked), strict=True):
        grey = np.asarray(Image.open(p).convert("L"))[None]
        assert np.array_equal(c.frames, prepare_frames(grey, "none", 8)) and c.frames.std() > 0

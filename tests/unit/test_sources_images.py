"""Labelled image sources: `fetal_planes_db:DIR` (with the release's CSV quirks), `imagefolder:DIR`
and `csv:FILE` manifests."""
import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.cache import prepare
from benchmark.data.source import Clip, Skipped
from benchmark.data.spec import parse_dataset_spec
from benchmark.errors import DataError, UserError

PLANES = ["Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax", "Maternal cervix", "Other"]
BRAIN_PLANES = ["Trans-thalamic", "Trans-cerebellum", "Trans-ventricular"]


def write_image(path: Path, value: int, size=(20, 28), mode="L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.full(size, value, np.uint8)
    img = Image.fromarray(data)
    if mode == "RGB":
        img = img.convert("RGB")
    elif mode == "I;16":
        img = Image.fromarray(data.astype(np.uint16) * 257)
    img.save(path)
    return path


def make_fetal_planes_db(root: Path, patients=8, header=None, sep=";") -> Path:
    """A miniature FETAL_PLANES_DB: 'Train ' with its trailing space, semicolons, names without .png."""
    header = header or ["Image_name", "Patient_num", "Plane", "Brain_plane", "Operator", "US_Machine", "Train "]
    lines = [sep.join(header)]
    for p in range(1, patients + 1):
        train = "1" if p <= 5 else "0"
        for k, plane in enumerate(PLANES):
            name = f"Patient{p:05d}_Plane{k + 1}_1_of_2"
            brain = BRAIN_PLANES[p % 3] if plane == "Fetal brain" else "Not A Brain"
            lines.append(sep.join([name, str(p), plane, brain, "Op. 1", "Voluson E6", train]))
            write_image(root / "Images" / f"{name}.png", 30 * k + p, mode="RGB" if p % 2 else "L")
    (root / "FETAL_PLANES_DB_data.csv").write_text("\n".join(lines) + "\n")
    return root


def test_fetal_planes_db_classes_subjects_and_patient_disjoint_splits(tmp_path):
    root = make_fetal_planes_db(tmp_path / "fpdb")
    source = parse_dataset_spec(f"fetal_planes_db:{root}", resolution=16)
    assert source.class_names("downstream") == PLANES
    clips = [c for c in source.items("downstream") if isinstance(c, Clip)]
    assert len(clips) == 8 * 6
    first = clips[0]
    assert first.video_id == "Patient00001_Plane1_1_of_2" and first.subject_id == "1"
    assert first.labels.tolist() == [0] and first.split == "train" and first.frames.shape == (1, 16, 16)
    assert int(first.frames[0, 8, 8]) == 1  # value 30*0 + 1 of the RGB image, gray
    assert {c.split for c in clips if int(c.subject_id) > 5} == {"test"}

    cache = prepare(source, "downstream", cache_dir=tmp_path / "cache", progress=False)
    idx = cache.index
    assert set(idx["split"]) == {"train", "val", "test"}
    assert (idx.groupby("subject_id")["split"].nunique() == 1).all()  # patient-disjoint
    assert set(idx.loc[idx["split"] == "test", "subject_id"]) == {"6", "7", "8"}
    assert cache.class_names == PLANES
    assert sorted(idx["label"].unique()) == list(range(6))


def test_fetal_planes_db_brain_planes(tmp_path):
    root = make_fetal_planes_db(tmp_path / "fpdb")
    source = parse_dataset_spec(f"fetal_planes_db:{root}", resolution=16, label_column="Brain_plane")
    assert source.class_names("downstream") == sorted(BRAIN_PLANES)
    clips = [c for c in source.items("downstream") if isinstance(c, Clip)]
    assert len(clips) == 8 and all("_Plane2_" in c.video_id for c in clips)
    with pytest.raises(UserError, match="Plane or Brain_plane"):
        parse_dataset_spec(f"fetal_planes_db:{root}", label_column="Operator")


def test_fetal_planes_db_misspelled_columns_and_wrong_separator(tmp_path):
    bad = make_fetal_planes_db(tmp_path / "a", patients=2, header=[
        "Image_name", "Patient_number", "Plane", "Brain_plane", "Operator", "US_Machine", "Train "])
    with pytest.raises(DataError) as err:
        parse_dataset_spec(f"fetal_planes_db:{bad}").class_names("downstream")
    msg = str(err.value)
    assert "FETAL_PLANES_DB_data.csv" in msg and "'Patient_num'" in msg and "'Patient_number'" in msg
    comma = make_fetal_planes_db(tmp_path / "b", patients=2, sep=",")
    with pytest.raises(DataError, match="semicolon-separated"):
        parse_dataset_spec(f"fetal_planes_db:{comma}").class_names("downstream")


def test_fetal_planes_db_missing_and_unreadable_images(tmp_path):
    root = make_fetal_planes_db(tmp_path / "fpdb")
    (root / "Images" / "Patient00002_Plane3_1_of_2.png").unlink()
    (root / "Images" / "Patient00003_Plane1_1_of_2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    source = parse_dataset_spec(f"fetal_planes_db:{root}", resolution=16)
    skipped = [s for s in source.items("downstream") if isinstance(s, Skipped)]
    assert [Path(s.path).name for s in skipped] == ["Patient00002_Plane3_1_of_2.png",
                                                    "Patient00003_Plane1_1_of_2.png"]
    assert "missing from Images/" in skipped[0].reason and skipped[1].reason
    with pytest.raises(DataError, match="Patient00002_Plane3_1_of_2.png"):
        prepare(source, "downstream", cache_dir=tmp_path / "cache", progress=False)
    cache = prepare(source, "downstream", cache_dir=tmp_path / "cache", on_error="skip", progress=False)
    assert len(cache.index) == 46 and cache.meta["skipped"] == 2


# ---- imagefolder --------------------------------------------------------------------------------

def test_imagefolder_classes_from_folders_and_subjects_below_them(tmp_path):
    root = tmp_path / "planes"
    for c, cls in enumerate(["4CH", "3VV", "LVOT"]):
        for s in range(3):
            write_image(root / cls / f"subj{s}" / "a.png", 10 * c + s)
            write_image(root / cls / f"subj{s}" / "b.jpg", 10 * c + s, mode="RGB")
    write_image(root / "stray.png", 1)  # beside the class folders: no class, left out
    source = parse_dataset_spec(f"imagefolder:{root}", resolution=8)
    assert source.class_names("downstream") == ["3VV", "4CH", "LVOT"]
    clips = list(source.items("downstream"))
    assert len(clips) == 18 and all(isinstance(c, Clip) for c in clips)
    assert clips[0].video_id == "3VV/subj0/a.png" and clips[0].labels.tolist() == [0]
    assert clips[0].subject_id == "subj0" and clips[0].split is None
    cache = prepare(source, "downstream", cache_dir=tmp_path / "cache", progress=False)
    assert (cache.index.groupby("subject_id")["split"].nunique() == 1).all()


def test_imagefolder_with_split_folders_and_16_bit_images(tmp_path):
    root = tmp_path / "planes"
    write_image(root / "train" / "a" / "1.png", 0)
    write_image(root / "train" / "b" / "2.png", 0)
    write_image(root / "val" / "a" / "3.png", 0)
    write_image(root / "test" / "b" / "4.tif", 100, mode="I;16")
    clips = list(parse_dataset_spec(f"imagefolder:{root}", resolution=8).items("downstream"))
    assert [(c.video_id, c.split, int(c.labels[0]), c.subject_id) for c in clips] == [
        ("test/b/4.tif", "test", 1, "test/b/4"), ("train/a/1.png", "train", 0, "train/a/1"),
        ("train/b/2.png", "train", 1, "train/b/2"), ("val/a/3.png", "val", 0, "val/a/3")]


def test_imagefolder_unreadable_image_and_empty_folder(tmp_path):
    root = tmp_path / "planes"
    write_image(root / "a" / "ok.png", 5)
    (root / "b").mkdir()
    (root / "b" / "bad.png").write_bytes(b"garbage")
    items = list(parse_dataset_spec(f"imagefolder:{root}").items("downstream"))
    assert isinstance(items[1], Skipped) and items[1].path.endswith("b/bad.png")
    assert "cannot identify image file" in items[1].reason
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="no images"):
        parse_dataset_spec(f"imagefolder:{tmp_path / 'empty'}").class_names("downstream")


# ---- csv manifest -------------------------------------------------------------------------------

def write_rows(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_csv_manifest_labels_subjects_splits_relative_paths(tmp_path):
    for k in range(4):
        write_image(tmp_path / "data" / "img" / f"{k}.png", 50 * k)
    manifest = write_rows(tmp_path / "data" / "labels.csv", ["path", "label", "subject", "split"], [
        ["img/0.png", "10", "s1", "train"], ["img/1.png", "2", "s1", "TRAIN"],
        ["img/2.png", "2", "s2", "Validation"], ["img/3.png", "10", "s3", ""]])
    source = parse_dataset_spec(f"csv:{manifest}", resolution=8)
    assert source.class_names("downstream") == ["2", "10"]  # numeric order
    clips = list(source.items("downstream"))
    assert [(c.labels.tolist(), c.subject_id, c.split) for c in clips] == [
        ([1], "s1", "train"), ([0], "s1", "train"), ([0], "s2", "val"), ([1], "s3", None)]
    assert int(clips[2].frames[0, 4, 4]) == 100


def test_csv_manifest_semicolons_other_label_column_and_pattern_subjects(tmp_path):
    for k in range(3):
        write_image(tmp_path / f"P{k}_scan.png", 20)
    manifest = tmp_path / "m.csv"
    manifest.write_text("Path;Plane;Operator\nP0_scan.png;4CH;a\nP1_scan.png;RVOT;b\nP2_scan.png;4CH;a\n")
    source = parse_dataset_spec(f"csv:{manifest}", label_column="Plane", subject_pattern=r"(P\d+)_", resolution=8)
    clips = list(source.items("downstream"))
    assert [(c.subject_id, int(c.labels[0])) for c in clips] == [("P0", 0), ("P1", 1), ("P2", 0)]


def test_csv_manifest_structural_errors_name_the_column_and_the_fix(tmp_path):
    manifest = write_rows(tmp_path / "m.csv", ["path", "lable"], [["a.png", "x"]])
    with pytest.raises(DataError) as err:
        parse_dataset_spec(f"csv:{manifest}").class_names("downstream")
    msg = str(err.value)
    assert msg.startswith(str(manifest)) and "missing column 'label'" in msg and "'lable' → 'label'" in msg
    manifest = write_rows(tmp_path / "m2.csv", ["path", "label", "split"], [["a.png", "x", "holdout"]])
    with pytest.raises(DataError, match="unknown split value.*'holdout'"):
        parse_dataset_spec(f"csv:{manifest}").class_names("downstream")
    manifest = write_rows(tmp_path / "m3.csv", ["path", "label"], [["a.png", ""]])
    with pytest.raises(DataError, match="empty 'label' on line"):
        parse_dataset_spec(f"csv:{manifest}").class_names("downstream")
    with pytest.raises(UserError, match="is not a file"):
        parse_dataset_spec(f"csv:{tmp_path / 'nope.csv'}")


def test_csv_manifest_missing_files_fail_or_are_reported(tmp_path, capsys):
    for k in range(6):
        write_image(tmp_path / f"{k}.png", 10 * k)
    rows = [[f"{k}.png", "ab"[k % 2], f"s{k}"] for k in range(6)] + [["missing.png", "a", "s9"]]
    manifest = write_rows(tmp_path / "m.csv", ["path", "label", "subject"], rows)
    source = parse_dataset_spec(f"csv:{manifest}", resolution=8)
    with pytest.raises(DataError) as err:
        prepare(source, "downstream", cache_dir=tmp_path / "cache", progress=False)
    assert err.value.path == str(tmp_path / "missing.png") and "line 8" in err.value.reason
    cache = prepare(source, "downstream", cache_dir=tmp_path / "cache", on_error="skip", progress=False)
    assert len(cache.index) == 6 and cache.meta["skipped"] == 1
    report = (cache.root / "skipped.csv").read_text().splitlines()
    assert report[0] == "path,reason" and report[1].startswith(str(tmp_path / "missing.png"))


@pytest.mark.parametrize("kind", ["fetal_planes_db", "imagefolder", "csv"])
def test_cli_prepares_each_labelled_image_source(kind, tmp_path, capsys):
    from benchmark.cli import main

    if kind == "fetal_planes_db":
        target = make_fetal_planes_db(tmp_path / "fpdb", patients=6)
    elif kind == "imagefolder":
        target = tmp_path / "folder"
        for k in range(12):
            write_image(target / "ab"[k % 2] / f"s{k}" / "x.png", k)
    else:
        for k in range(12):
            write_image(tmp_path / f"{k}.png", k)
        target = write_rows(tmp_path / "labels.csv", ["path", "label"], [[f"{k}.png", "ab"[k % 2]] for k in range(12)])
    assert main(["data", "prepare", "--dataset", f"{kind}:{target}", "--cache-dir", str(tmp_path / "c"),
                 "--resolution", "16"]) == 0
    out = capsys.readouterr().out
    assert "(downstream)" in out and "splits     train" in out and "test" in out
    assert f"frames     {36 if kind == 'fetal_planes_db' else 12} of 16×16 px" in out

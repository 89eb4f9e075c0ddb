"""`dicom:DIR` on DICOM files written with pydicom: cines and single frames, native, RLE, JPEG baseline
and JPEG 2000, colour and MONOCHROME1, files without pixel data, and a label manifest."""
import csv
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    BasicTextSRStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from benchmark.data.cache import prepare
from benchmark.data.source import Clip, Skipped
from benchmark.data.spec import parse_dataset_spec
from benchmark.errors import DataError, UserError

SIZE = 32  # native frame size = cache resolution, so lossless codecs must round-trip exactly


def pixels(t: int, seed: int, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, size, size), dtype=np.uint8)


def write_dicom(path: Path, frames: np.ndarray | None, patient: str = "", *, photometric="MONOCHROME2",
                bits: int = 8, syntax=ExplicitVRLittleEndian, preamble=True) -> Path:
    """frames: T×H×W (a cine when T > 1), T×H×W×3 for RGB, or None for a file without pixel data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sop = BasicTextSRStorage if frames is None else (
        UltrasoundMultiFrameImageStorage if len(frames) > 1 else UltrasoundImageStorage)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    if patient:
        ds.PatientID = patient
    if frames is not None:
        color = frames.ndim == 4
        ds.Rows, ds.Columns = frames.shape[1:3]
        ds.SamplesPerPixel = 3 if color else 1
        if color:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = (8, 8, 7) if bits == 8 else (16, bits, bits - 1)
        ds.PixelRepresentation = 0
        if len(frames) > 1:
            ds.NumberOfFrames = len(frames)
        ds.PixelData = (frames[0] if len(frames) == 1 else frames).tobytes()
        if syntax == JPEGBaseline8Bit:
            # No pydicom encoder for JPEG baseline: encode each frame with Pillow (colour as YCbCr,
            # hence YBR_FULL_422) and encapsulate.
            encoded = []
            for f in frames:
                buf = io.BytesIO()
                Image.fromarray(f).save(buf, format="JPEG", quality=95)
                encoded.append(buf.getvalue())
            ds.PixelData = encapsulate(encoded)
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        elif syntax != ExplicitVRLittleEndian:
            ds.compress(syntax)
    ds.save_as(path, enforce_file_format=preamble)
    return path


@pytest.fixture
def dicom_folder(tmp_path) -> Path:
    root = tmp_path / "dicom"
    write_dicom(root / "siteA" / "cine.dcm", pixels(6, 1), "P001")
    write_dicom(root / "siteA" / "cine_rle.dcm", pixels(4, 2), "P001", syntax=RLELossless)
    write_dicom(root / "siteA" / "single.dcm", pixels(1, 3), "P002")
    write_dicom(root / "siteB" / "j2k.dcm", pixels(3, 4), "P002", syntax=JPEG2000Lossless)
    smooth = np.tile(np.linspace(20, 230, SIZE, dtype=np.uint8), (2, SIZE, 1))  # JPEG-friendly content
    write_dicom(root / "siteB" / "jpeg.dcm", smooth, "P003", syntax=JPEGBaseline8Bit)
    write_dicom(root / "siteB" / "IM0001", pixels(2, 5), "")  # no extension, no PatientID
    (root / "siteB" / "README").write_text("not DICOM, no extension: must be ignored")
    return root


def by_id(items):
    return {c.video_id: c for c in items if isinstance(c, Clip)}


def test_cines_single_frames_and_every_transfer_syntax_decode(dicom_folder):
    source = parse_dataset_spec(f"dicom:{dicom_folder}", resolution=SIZE, crop="none", workers=2)
    items = list(source.items("pretrain"))
    assert all(isinstance(i, Clip) for i in items)
    clips = by_id(items)
    assert sorted(clips) == ["siteA/cine.dcm", "siteA/cine_rle.dcm", "siteA/single.dcm", "siteB/IM0001",
                             "siteB/j2k.dcm", "siteB/jpeg.dcm"]
    assert np.array_equal(clips["siteA/cine.dcm"].frames, pixels(6, 1))
    assert np.array_equal(clips["siteA/cine_rle.dcm"].frames, pixels(4, 2))
    assert np.array_equal(clips["siteA/single.dcm"].frames, pixels(1, 3))
    assert np.array_equal(clips["siteB/j2k.dcm"].frames, pixels(3, 4))
    assert np.array_equal(clips["siteB/IM0001"].frames, pixels(2, 5))
    smooth = np.tile(np.linspace(20, 230, SIZE, dtype=np.uint8), (2, SIZE, 1))
    assert np.abs(clips["siteB/jpeg.dcm"].frames.astype(int) - smooth).max() <= 6  # lossy, but close
    # Subjects: PatientID, else the sub-folder.
    assert {k: c.subject_id for k, c in clips.items()} == {
        "siteA/cine.dcm": "P001", "siteA/cine_rle.dcm": "P001", "siteA/single.dcm": "P002",
        "siteB/j2k.dcm": "P002", "siteB/jpeg.dcm": "P003", "siteB/IM0001": "siteB"}


def test_stride_and_max_frames_select_cine_frames(dicom_folder):
    source = parse_dataset_spec(f"dicom:{dicom_folder}", resolution=SIZE, crop="none", stride=2, max_frames=2)
    cine = by_id(source.items("pretrain"))["siteA/cine.dcm"]
    assert cine.frame_idx.tolist() == [0, 2]
    assert np.array_equal(cine.frames, pixels(6, 1)[[0, 2]])


def test_colour_and_monochrome1_and_16_bit(tmp_path):
    root = tmp_path / "d"
    rgb = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    rgb[..., 1] = 200
    write_dicom(root / "rgb.dcm", rgb, "P1", photometric="RGB")
    wide = np.zeros((1, SIZE, SIZE), np.uint16)
    wide[0, :, SIZE // 2:] = 4095
    write_dicom(root / "mono1.dcm", wide, "P1", photometric="MONOCHROME1", bits=12)
    clips = by_id(parse_dataset_spec(f"dicom:{root}", resolution=SIZE, crop="none").items("pretrain"))
    assert np.all(clips["rgb.dcm"].frames == round(0.587 * 200))
    mono1 = clips["mono1.dcm"].frames[0]
    assert mono1[0, 0] == 255 and mono1[0, -1] == 0  # stretched to 8 bits and inverted


def test_colour_jpeg_baseline_in_ybr(tmp_path):
    rgb = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    rgb[..., 1] = 200
    write_dicom(tmp_path / "d" / "ybr.dcm", rgb, "P1", photometric="YBR_FULL_422", syntax=JPEGBaseline8Bit)
    clip = by_id(parse_dataset_spec(f"dicom:{tmp_path / 'd'}", resolution=SIZE, crop="none").items("pretrain"))
    gray = clip["ybr.dcm"].frames
    assert gray.shape == (2, SIZE, SIZE) and np.abs(gray.astype(int) - round(0.587 * 200)).max() <= 4


def test_file_without_pixel_data_and_non_dicom_file(dicom_folder, tmp_path):
    write_dicom(dicom_folder / "report.dcm", None, "P009")
    (dicom_folder / "broken.dcm").write_bytes(b"\x00" * 50)
    items = list(parse_dataset_spec(f"dicom:{dicom_folder}", resolution=16).items("pretrain"))
    skipped = {Path(s.path).name: s.reason for s in items if isinstance(s, Skipped)}
    assert "no pixel data" in skipped["report.dcm"] and "Basic Text SR" in skipped["report.dcm"]
    assert "broken.dcm" in skipped
    with pytest.raises(DataError) as err:
        prepare(parse_dataset_spec(f"dicom:{dicom_folder}", resolution=16), "pretrain",
                cache_dir=tmp_path / "cache", progress=False)
    assert Path(err.value.path).name in ("broken.dcm", "report.dcm")
    cache = prepare(parse_dataset_spec(f"dicom:{dicom_folder}", resolution=16), "pretrain",
                    cache_dir=tmp_path / "cache", on_error="skip", progress=False)
    report = (cache.root / "skipped.csv").read_text()
    assert "report.dcm" in report and "no pixel data" in report and "broken.dcm" in report
    assert cache.index["video_id"].nunique() == 6 and len(cache.index) == 6 + 4 + 1 + 3 + 2 + 2


def test_empty_dicom_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="no DICOM files"):
        parse_dataset_spec(f"dicom:{tmp_path / 'd'}").fingerprint_parts("pretrain")


def write_manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_label_manifest_makes_a_downstream_set(dicom_folder, tmp_path):
    labels = write_manifest(tmp_path / "labels.csv", [
        {"path": "siteA/single.dcm", "label": "4CH", "split": "train"},
        {"path": "siteB/j2k.dcm", "label": "3VV", "split": "test"},
        {"path": "siteB/IM0001", "label": "4CH", "split": "val"},
    ])
    source = parse_dataset_spec(f"dicom:{dicom_folder}", resolution=SIZE, labels=str(labels))
    assert source.roles == ("pretrain", "downstream")
    assert source.class_names("downstream") == ["3VV", "4CH"]
    clips = by_id(source.items("downstream"))
    assert {k: (c.labels.tolist(), c.split) for k, c in clips.items()} == {
        "siteA/single.dcm": ([1], "train"), "siteB/j2k.dcm": ([0, 0, 0], "test"),
        "siteB/IM0001": ([1, 1], "val")}
    assert clips["siteB/j2k.dcm"].subject_id == "P002"
    assert len(by_id(source.items("pretrain"))) == 6  # pretraining still sees every file
    unlabelled = parse_dataset_spec(f"dicom:{dicom_folder}")
    with pytest.raises(UserError, match="cannot be used for downstream"):
        prepare(unlabelled, "downstream", cache_dir=tmp_path / "cache", progress=False)


def test_manifest_pointing_at_missing_files(dicom_folder, tmp_path):
    labels = write_manifest(tmp_path / "labels.csv", [
        {"path": "siteA/single.dcm", "label": "a"}, {"path": "siteA/gone.dcm", "label": "b"},
        {"path": "siteB/j2k.dcm", "label": "b"}, {"path": "siteB/IM0001", "label": "a"}])
    source = parse_dataset_spec(f"dicom:{dicom_folder}", resolution=16, labels=str(labels))
    first = next(iter(source.items("downstream")))
    assert isinstance(first, Skipped) and first.path.endswith("siteA/gone.dcm")
    assert "labels.csv (line 3)" in first.reason and "does not exist" in first.reason
    with pytest.raises(DataError, match="gone.dcm"):
        prepare(source, "downstream", cache_dir=tmp_path / "cache", progress=False)


def test_pydicom_reads_what_the_helper_writes(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", pixels(3, 0), "P1", syntax=RLELossless)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == RLELossless and int(ds.NumberOfFrames) == 3


def test_cli_prepares_both_roles_of_a_labelled_dicom_folder(dicom_folder, tmp_path, capsys):
    from benchmark.cli import main

    labels = write_manifest(tmp_path / "labels.csv", [
        {"path": "siteA/cine.dcm", "label": "4CH"}, {"path": "siteA/single.dcm", "label": "3VV"},
        {"path": "siteB/jpeg.dcm", "label": "4CH"}, {"path": "siteB/IM0001", "label": "3VV"}])
    assert main(["data", "prepare", "--dataset", f"dicom:{dicom_folder}", "--labels", str(labels),
                 "--cache-dir", str(tmp_path / "cache"), "--resolution", "16", "--crop", "none"]) == 0
    out = capsys.readouterr().out
    assert "(pretrain)" in out and "frames     18 of 16×16 px" in out
    assert "(downstream)" in out and "frames     11 of 16×16 px" in out and "classes    3VV 3, 4CH 8" in out

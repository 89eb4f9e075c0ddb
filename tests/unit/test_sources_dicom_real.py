"""`dicom:DIR` on real ultrasound DICOMs, no download: pydicom's wheel ships a 30-frame YBR_FULL_422 JPEG
echo cine, an RGB, a palette-colour and a JPEG 2000 ultrasound image; `pydicom-data` (a dev extra) ships
the same US1 image uncompressed and as JPEG 2000, and a 16-bit palette-colour one. They go through the
source into a frame cache and a short pretraining."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut, pixel_array

import benchmark.backbones
from benchmark.checkpoint import read_meta
from benchmark.data.cache import prepare
from benchmark.data.sources.readers import read_dicom
from benchmark.data.spec import parse_dataset_spec
from benchmark.pretrain.config import PretrainConfig
from benchmark.pretrain.run import pretrain
from tests.unit.downstream_fakes import TinyEncoder

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
# name → (frames, PatientID) as the files record them
SHIPPED = {"examples_ybr_color.dcm": (30, "204"), "examples_rgb_color.dcm": (1, "13US1"),
           "examples_palette.dcm": (1, "11-05-25-142825"), "examples_jpeg2k.dcm": (1, "13US1")}
LUMA = np.array([0.299, 0.587, 0.114])


def pydicom_data_files() -> Path:
    data_store = pytest.importorskip("data_store", reason="pydicom-data (a dev extra: pip install -e '.[dev]') "
                                                          "ships the US1 and 16-bit palette files")
    return Path(data_store.__file__).parent / "data"


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("real_us")
    for name in SHIPPED:
        shutil.copy(PYDICOM_FILES / name, folder / name)
    return folder


def test_real_us_files_go_through_dicom_into_a_cache(real_folder, tmp_path):
    cache = prepare(parse_dataset_spec(f"dicom:{real_folder}", resolution=32, workers=1), "pretrain",
                    cache_dir=tmp_path, progress=False)
    idx = cache.index
    frames_per_file = idx.groupby("video_id").size().to_dict()
    assert frames_per_file == {name: n for name, (n, _) in SHIPPED.items()}
    # Subjects come from the files' PatientID: the RGB and JPEG 2000 images are one patient's.
    assert dict(zip(idx["video_id"], idx["subject_id"], strict=True)) == {n: p for n, (_, p) in SHIPPED.items()}
    assert cache.frames.shape == (33, 32, 32)
    cine = cache.frames[idx.index[idx["video_id"] == "examples_ybr_color.dcm"]]
    # A beating heart: 28 distinct frames (the file itself repeats frames 10 and 27 once each).
    assert len(np.unique(cine.reshape(30, -1), axis=0)) == 28
    card = cache.card()
    assert (card["frames"], card["videos"], card["subjects"], card["clips_without_subject"]) == (33, 4, 3, 0)


def test_ybr_echo_cine_becomes_its_luma():
    """YBR_FULL_422 JPEG: the gray frames are the Y plane (pydicom converts to RGB, then ITU-R 601 luma),
    not a mix of the chroma planes."""
    path = PYDICOM_FILES / "examples_ybr_color.dcm"
    gray, kept, patient = read_dicom(str(path), stride=4)
    y = pixel_array(pydicom.dcmread(path), as_rgb=False)[::4, ..., 0]
    assert gray.shape == y.shape == (8, 240, 320) and kept.tolist() == list(range(0, 30, 4))
    assert np.abs(gray.astype(int) - y).mean() < 0.5
    assert patient == "204"


def test_palette_colour_keeps_the_palettes_brightness(tmp_path):
    """A palette's 16-bit entries map to 8 bits by their top byte: a dark image stays dark rather than
    being stretched over its own range."""
    ds = pydicom.dcmread(PYDICOM_FILES / "examples_palette.dcm")
    dark = np.minimum(ds.pixel_array, 60).astype(np.uint8)  # only the palette's darker entries
    ds.PixelData = dark.tobytes()
    ds.save_as(tmp_path / "dark.dcm")
    gray, _, _ = read_dicom(str(tmp_path / "dark.dcm"))
    expected = np.clip(np.rint((apply_color_lut(dark, ds) >> 8) @ LUMA), 0, 255)
    assert np.abs(gray[0].astype(int) - expected).max() <= 1
    assert gray.max() < 128


def test_pydicom_data_jpeg2000_and_16_bit_palette_files():
    root = pydicom_data_files()
    lossless, _, _ = read_dicom(str(root / "US1_J2KR.dcm"))
    plain, _, patient = read_dicom(str(root / "US1_UNCR.dcm"))
    assert lossless.shape == (1, 480, 640) and np.array_equal(lossless, plain) and patient == "13US1"
    ds = pydicom.dcmread(root / "gdcm-US-ALOKA-16.dcm")
    assert ds.BitsAllocated == 16 and ds.PhotometricInterpretation == "PALETTE COLOR"
    gray, _, _ = read_dicom(str(root / "gdcm-US-ALOKA-16.dcm"))
    expected = np.clip(np.rint((apply_color_lut(ds.pixel_array, ds) >> 8) @ LUMA), 0, 255)
    assert np.abs(gray[0].astype(int) - expected).max() <= 1


def test_a_short_pretraining_on_the_real_cache(real_folder, tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr(benchmark.backbones, "build_backbone", lambda *a, **k: TinyEncoder())
    pool = prepare(parse_dataset_spec(f"dicom:{real_folder}", resolution=16, workers=1), "pretrain",
                   cache_dir=tmp_path / "cache", progress=False)
    cfg = PretrainConfig(method="simclr", resolution=16, steps=3, batch_size=8,
                         hparams={"proj_hidden_dim": 16, "proj_output_dim": 8})
    final = pretrain(cfg, pool, tmp_path / "runs", progress=False)
    meta = read_meta(final)
    assert meta["data_fingerprint"] == pool.fingerprint and meta["frames"] == 33
    assert meta["steps"] == 3 and np.isfinite(meta["final_loss"])

"""`videos:DIR` and `echonet:DIR` on real clips encoded with PyAV, and `sslbench data prepare` end to end."""
import csv
import os
from pathlib import Path

import av
import numpy as np
import pytest

from benchmark.cli import main
from benchmark.data.cache import prepare
from benchmark.data.source import Clip, Skipped
from benchmark.data.sources.echonet import EchoNetSource
from benchmark.data.sources.readers import video_frame_to_gray
from benchmark.data.sources.videos import VideoFolderSource
from benchmark.data.spec import parse_dataset_spec
from benchmark.errors import DataError, UserError

CODECS = {".mp4": ("libx264", "yuv420p"), ".avi": ("mpeg4", "yuv420p"), ".mkv": ("libx264", "yuv420p"),
          ".mov": ("mpeg4", "yuv420p"), ".gif": ("gif", "rgb8")}


def encode_clip(path: Path, n_frames=10, size=(48, 64), seed=0, overlay=True, codec=None) -> None:
    """A moving speckle sector (a 12 px margin: rows 12-36, cols 12-52 at 48×64) under a static white
    text block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    codec, pix_fmt = codec or CODECS[path.suffix]
    rng = np.random.default_rng(seed)
    h, w = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        for _ in range(n_frames):
            rgb = np.zeros((h, w, 3), np.uint8)
            rgb[12:h - 12, 12:w - 12] = rng.integers(50, 200, (h - 24, w - 24, 1))
            if overlay:
                rgb[1:7, 2:30] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("name,codec", [("limited.mp4", ("libx264", "yuv420p")),
                                        ("full.avi", ("mjpeg", "yuvj420p")),
                                        ("chroma444.mkv", ("libx264", "yuv444p")),
                                        ("palette.gif", ("gif", "rgb8"))])
def test_fast_luma_equals_ffmpeg_gray_conversion(tmp_path, name, codec):
    encode_clip(tmp_path / name, n_frames=4, seed=3, codec=codec)
    with av.open(str(tmp_path / name)) as container:
        for frame in container.decode(video=0):
            assert np.array_equal(video_frame_to_gray(frame), frame.to_ndarray(format="gray"))


@pytest.fixture
def clip_folder(tmp_path) -> Path:
    root = tmp_path / "clips"
    encode_clip(root / "pat1" / "a.mp4", seed=1)
    encode_clip(root / "pat1" / "b.avi", seed=2)
    encode_clip(root / "pat2" / "c.gif", seed=3)
    encode_clip(root / "pat2" / "deeper" / "d.mkv", seed=4)
    encode_clip(root / "pat3" / "e.mov", seed=5)
    (root / "pat3" / "notes.txt").write_text("not a video")
    return root


def _clips(source, role="pretrain"):
    return list(source.items(role))


def test_every_container_decodes_with_subjects_from_sub_folders(clip_folder):
    source = parse_dataset_spec(f"videos:{clip_folder}", resolution=32, workers=2)
    items = _clips(source)
    assert all(isinstance(c, Clip) for c in items)
    assert [c.video_id for c in items] == ["pat1/a.mp4", "pat1/b.avi", "pat2/c.gif", "pat2/deeper/d.mkv",
                                           "pat3/e.mov"]
    assert [c.subject_id for c in items] == ["pat1", "pat1", "pat2", "pat2", "pat3"]
    for c in items:
        assert c.frames.shape == (10, 32, 32) and c.frames.dtype == np.uint8
        assert c.frame_idx.tolist() == list(range(10))
        assert c.labels is None and c.split is None
        assert c.frames.std(axis=0).mean() > 5  # real moving content, not a blank frame


def test_stride_and_max_frames(clip_folder):
    source = parse_dataset_spec(f"videos:{clip_folder}", resolution=16, stride=3, max_frames=3)
    first = _clips(source)[0]
    assert first.frame_idx.tolist() == [0, 3, 6]
    assert first.frames.shape == (3, 16, 16)


def test_auto_crop_drops_the_burnt_in_text(clip_folder):
    auto = _clips(parse_dataset_spec(f"videos:{clip_folder}", resolution=32, crop="auto"))
    none = _clips(parse_dataset_spec(f"videos:{clip_folder}", resolution=32, crop="none"))
    for a, n in zip(auto, none, strict=True):
        assert n.frames.max() > 240  # the white text is in the full frame
        assert a.frames.max() < 235  # and cropped away (the sector's speckle stays below 200 + codec error)
        assert a.frames.mean() > n.frames.mean()  # the sector fills the frame instead of the black margin


def test_subject_pattern_and_unmatched_files(clip_folder):
    encode_clip(clip_folder / "P07_extra.mp4", seed=9)
    source = parse_dataset_spec(f"videos:{clip_folder}", resolution=16, subject_pattern=r"^(P\d+)_")
    items = _clips(source)
    clips = [c for c in items if isinstance(c, Clip)]
    assert [(c.video_id, c.subject_id) for c in clips] == [("P07_extra.mp4", "P07")]
    skipped = [s for s in items if isinstance(s, Skipped)]
    assert len(skipped) == 5 and all("does not match" in s.reason for s in skipped)


def _corrupt(root: Path) -> tuple[Path, Path]:
    garbage = root / "pat4" / "garbage.mp4"
    garbage.parent.mkdir()
    # Fixed bytes: about 1 in 150 random 2,000-byte files opens as some audio format (no video stream)
    # instead of failing as invalid data, which made the error asserted below vary from run to run.
    garbage.write_bytes(np.random.default_rng(0).bytes(2000))
    truncated = root / "pat4" / "truncated.mp4"
    encode_clip(truncated, seed=7)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # the index (moov) of an mp4 is written last: now lost
    return garbage, truncated


def test_corrupt_and_truncated_videos_fail_with_the_file_name(clip_folder, tmp_path):
    garbage, truncated = _corrupt(clip_folder)
    source = parse_dataset_spec(f"videos:{clip_folder}", resolution=16)
    with pytest.raises(DataError) as err:
        prepare(source, "pretrain", cache_dir=tmp_path / "cache", progress=False)
    assert err.value.path == str(garbage)
    assert "InvalidDataError" in str(err.value) and "--on-error skip" in str(err.value)
    assert not list((tmp_path / "cache").glob("videos-*"))  # no half cache left behind


def test_corrupt_and_truncated_videos_are_reported_with_skip(clip_folder, tmp_path, capsys):
    garbage, truncated = _corrupt(clip_folder)
    cache = prepare(parse_dataset_spec(f"videos:{clip_folder}", resolution=16), "pretrain",
                    cache_dir=tmp_path / "cache", on_error="skip", progress=False)
    assert cache.index["video_id"].nunique() == 5
    with open(cache.root / "skipped.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"] for r in rows) == sorted([str(garbage), str(truncated)])
    assert all(r["reason"] for r in rows)
    assert cache.meta["skipped"] == 2


def test_empty_folder_and_missing_folder_are_user_errors(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("x")
    source = parse_dataset_spec(f"videos:{tmp_path / 'empty'}")
    with pytest.raises(UserError, match="no video files"):
        prepare(source, "pretrain", cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(UserError, match="is not a folder"):
        parse_dataset_spec(f"videos:{tmp_path / 'nowhere'}")
    with pytest.raises(UserError, match="--crop"):
        parse_dataset_spec(f"videos:{tmp_path / 'empty'}", crop="sector")
    with pytest.raises(UserError, match="--stride"):
        parse_dataset_spec(f"videos:{tmp_path / 'empty'}", stride=0)
    with pytest.raises(UserError, match="--label-column does not apply"):
        parse_dataset_spec(f"videos:{tmp_path / 'empty'}", label_column="Plane")


def test_fingerprint_tracks_files_and_settings_and_the_cache_is_reused(clip_folder, tmp_path, monkeypatch):
    source = parse_dataset_spec(f"videos:{clip_folder}", resolution=16)
    first = source.fingerprint_parts("pretrain")
    assert first == parse_dataset_spec(f"videos:{clip_folder}", resolution=16).fingerprint_parts("pretrain")
    assert first != parse_dataset_spec(f"videos:{clip_folder}", resolution=16, stride=2).fingerprint_parts(
        "pretrain")
    cache = prepare(source, "pretrain", cache_dir=tmp_path / "cache", progress=False)

    def no_decoding(self, role):
        raise AssertionError("an unchanged folder must not be decoded again")

    monkeypatch.setattr(VideoFolderSource, "items", no_decoding)
    again = prepare(parse_dataset_spec(f"videos:{clip_folder}", resolution=16), "pretrain",
                    cache_dir=tmp_path / "cache", progress=False)
    assert again.root == cache.root
    target = clip_folder / "pat1" / "a.mp4"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, or copied: the same data
    assert source.fingerprint_parts("pretrain") == first
    target.write_bytes(target.read_bytes()[:-1] + b"\0")  # one byte changed: a new cache key
    assert source.fingerprint_parts("pretrain") != first


# ---- EchoNet-Dynamic ----------------------------------------------------------------------------

def make_echonet(root: Path, names_with_ext=False) -> Path:
    splits = ["TRAIN", "TRAIN", "TRAIN", "VAL", "TEST"]
    with open(root / "FileList.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames",
                    "Split"])
        for k, split in enumerate(splits):
            name = f"0X{k:04X}ABCD"
            encode_clip(root / "Videos" / f"{name}.avi", n_frames=6, size=(32, 32), seed=k, overlay=False)
            w.writerow([f"{name}.avi" if names_with_ext else name, 55.0, 30, 70, 32, 32, 50, 6, split])
    return root


def test_echonet_uses_train_videos_for_pretraining(tmp_path):
    root = make_echonet(tmp_path)
    items = _clips(parse_dataset_spec(f"echonet:{root}", resolution=16))
    assert [c.video_id for c in items] == ["0X0000ABCD", "0X0001ABCD", "0X0002ABCD"]
    assert [c.subject_id for c in items] == [c.video_id for c in items]  # one patient per video
    assert all(c.frames.shape == (6, 16, 16) for c in items)
    with_val = _clips(EchoNetSource(path=str(root), resolution=16, splits="TRAIN,VAL"))
    assert len(with_val) == 4
    with pytest.raises(UserError, match="splits"):
        EchoNetSource(path=str(root), splits="HOLDOUT")


def test_echonet_file_names_with_extension_and_missing_videos(tmp_path):
    root = make_echonet(tmp_path, names_with_ext=True)
    (root / "Videos" / "0X0001ABCD.avi").unlink()
    items = _clips(parse_dataset_spec(f"echonet:{root}", resolution=16))
    skipped = [s for s in items if isinstance(s, Skipped)]
    assert [Path(s.path).name for s in skipped] == ["0X0001ABCD.avi"]
    assert "listed in FileList.csv" in skipped[0].reason
    assert [c.video_id for c in items if isinstance(c, Clip)] == ["0X0000ABCD", "0X0002ABCD"]


def test_echonet_misspelled_column_names_the_file_and_the_fix(tmp_path):
    root = make_echonet(tmp_path)
    text = (root / "FileList.csv").read_text().replace("Split", "Splt", 1)
    (root / "FileList.csv").write_text(text)
    with pytest.raises(DataError) as err:
        prepare(parse_dataset_spec(f"echonet:{root}"), "pretrain", cache_dir=tmp_path / "cache", progress=False)
    msg = str(err.value)
    assert "FileList.csv" in msg and "'Split'" in msg and "'Splt' → 'Split'" in msg and "'FileName'" in msg
    (root / "FileList.csv").unlink()
    with pytest.raises(DataError, match="FileList.csv: missing"):
        parse_dataset_spec(f"echonet:{root}").fingerprint_parts("pretrain")


# ---- CLI end to end -----------------------------------------------------------------------------

def test_cli_prepare_builds_then_reuses_and_reports_skips(clip_folder, tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    args = ["data", "prepare", "--dataset", f"videos:{clip_folder}", "--cache-dir", str(cache_dir),
            "--resolution", "32", "--stride", "2", "-o", "workers=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "frames     25 of 32×32 px" in out and "videos     5" in out and "subjects   3" in out
    built = sorted(p.name for p in cache_dir.iterdir())
    assert main(args) == 0
    assert sorted(p.name for p in cache_dir.iterdir()) == built  # reused, nothing new

    _corrupt(clip_folder)
    assert main(args) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("sslbench: error: ") and "garbage.mp4" in last_line
    assert "InvalidDataError" in last_line and "--on-error skip" in last_line
    assert main(args + ["--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "skipped    2 files" in captured.out
    reports = list(cache_dir.glob("videos-*/skipped.csv"))
    assert len(reports) == 1 and len(reports[0].read_text().splitlines()) == 3
    assert f"(report: {reports[0]})" in captured.out  # the summary names the report where it is

"""`hdf5:FILE` on a file written with h5py: T×H×W and T×H×W×C datasets, nested groups, bad shapes."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmark.data.cache import prepare
from benchmark.data.source import Clip, Skipped
from benchmark.data.spec import parse_dataset_spec
from benchmark.errors import DataError

SIZE = 24


def video(t: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, SIZE, SIZE), dtype=np.uint8)


@pytest.fixture
def h5_file(tmp_path) -> Path:
    path = tmp_path / "videos.h5"
    with h5py.File(path, "w") as f:
        f["patient1/clip_a"] = video(8, 1)  # T×H×W uint8
        f["patient1/clip_b"] = np.repeat(video(5, 2)[..., None], 3, axis=-1)  # T×H×W×3
        f["patient2/clip_c"] = video(4, 3).astype(np.float32) / 255.0  # normalised floats
        f["flat_clip"] = video(3, 4)
        f["meta/timestamps"] = np.arange(10)  # 1-D: not a video
    return path


def test_datasets_become_clips_with_group_subjects(h5_file):
    items = list(parse_dataset_spec(f"hdf5:{h5_file}", resolution=SIZE, crop="none").items("pretrain"))
    clips = {c.video_id: c for c in items if isinstance(c, Clip)}
    assert sorted(clips) == ["flat_clip", "patient1/clip_a", "patient1/clip_b", "patient2/clip_c"]
    assert np.array_equal(clips["patient1/clip_a"].frames, video(8, 1))
    assert np.array_equal(clips["patient1/clip_b"].frames, video(5, 2))  # gray RGB stays exact
    assert np.abs(clips["patient2/clip_c"].frames.astype(int) - video(4, 3)).max() <= 1
    assert {k: c.subject_id for k, c in clips.items()} == {
        "flat_clip": "flat_clip", "patient1/clip_a": "patient1", "patient1/clip_b": "patient1",
        "patient2/clip_c": "patient2"}
    skipped = [s for s in items if isinstance(s, Skipped)]
    assert len(skipped) == 1 and skipped[0].path.endswith("videos.h5:meta/timestamps")
    assert "shape (10,)" in skipped[0].reason


def test_stride_reads_only_the_kept_frames(h5_file):
    source = parse_dataset_spec(f"hdf5:{h5_file}", resolution=SIZE, crop="none", stride=3, max_frames=2,
                                subject_pattern=r"(\d+)/")
    clips = {c.video_id: c for c in source.items("pretrain") if isinstance(c, Clip)}
    a = clips["patient1/clip_a"]
    assert a.frame_idx.tolist() == [0, 3] and np.array_equal(a.frames, video(8, 1)[[0, 3]])
    assert a.subject_id == "1"


def test_bad_dataset_shapes_under_fail_and_skip(h5_file, tmp_path):
    source = parse_dataset_spec(f"hdf5:{h5_file}", resolution=16)
    with pytest.raises(DataError, match="meta/timestamps"):
        prepare(source, "pretrain", cache_dir=tmp_path / "cache", progress=False)
    cache = prepare(source, "pretrain", cache_dir=tmp_path / "cache", on_error="skip", progress=False)
    assert len(cache.index) == 8 + 5 + 4 + 3
    assert "meta/timestamps" in (cache.root / "skipped.csv").read_text()


def test_not_an_hdf5_file(tmp_path):
    bogus = tmp_path / "x.h5"
    bogus.write_bytes(b"plain text")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        list(parse_dataset_spec(f"hdf5:{bogus}").items("pretrain"))
    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    with pytest.raises(DataError, match="holds no datasets"):
        list(parse_dataset_spec(f"hdf5:{empty}").items("pretrain"))


def test_cli_with_skip_reports_the_bad_dataset(h5_file, tmp_path, capsys):
    from benchmark.cli import main

    assert main(["data", "prepare", "--dataset", f"hdf5:{h5_file}", "--cache-dir", str(tmp_path / "c"),
                 "--resolution", "16", "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "frames     20 of 16×16 px" in captured.out and "skipped    1 files" in captured.out
    report = captured.out.split("(report: ")[1].split(")")[0]  # the summary names the report where it now is
    assert "meta/timestamps" in open(report).read()

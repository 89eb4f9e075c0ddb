"""What `sslbench data prepare` prints about a cache: its summary, line by line."""
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.cache import FrameCache


def _cache(labels, splits, class_names, meta_extra) -> FrameCache:
    n = len(labels)
    index = pd.DataFrame({"video_id": [f"v{i // 3}" for i in range(n)], "subject_id": [f"s{i // 300}" for i in range(n)],
                          "frame_idx": [i % 3 for i in range(n)], "label": labels, "split": splits, "scanner": ""})
    return FrameCache(root=Path("/caches/x"), frames=np.zeros((n, 32, 32), np.uint8), index=index,
                      class_names=class_names, meta={"fingerprint": "0123456789abcdef" * 4, "spec": "spec:/d",
                                                     **meta_extra})


def test_downstream_summary_counts_frames_videos_subjects_splits_classes_and_skips():
    # 1,500 frames: 1,000 train, 300 val, 200 test; labels 0 and 2 (class 1 absent), 100 unlabelled.
    labels = [0] * 700 + [2] * 300 + [0] * 300 + [2] * 100 + [-1] * 100
    splits = ["train"] * 1000 + ["val"] * 300 + ["test"] * 200
    cache = _cache(labels, splits, ["4CH", "LVOT", "RVOT"], {"role": "downstream", "skipped": 7})
    assert cache.summary().splitlines() == [
        "cache      /caches/x",
        "source     spec:/d (downstream), fingerprint 0123456789abcdef",
        "frames     1,500 of 32×32 px (1.5 MiB)",
        "videos     500",
        "subjects   5",
        "splits     train 1,000, val 300, test 200",
        "classes    4CH 1,000, LVOT 0, RVOT 400",
        "skipped    7 files (report: /caches/x/skipped.csv)",
    ]


def test_pretraining_summary_has_no_classes_and_no_skips():
    cache = _cache([-1] * 1200, ["pretrain"] * 1200, [], {"role": "pretrain", "skipped": 0})
    assert cache.summary().splitlines() == [
        "cache      /caches/x",
        "source     spec:/d (pretrain), fingerprint 0123456789abcdef",
        "frames     1,200 of 32×32 px (1.2 MiB)",
        "videos     400",
        "subjects   4",
        "splits     pretrain 1,200",
    ]


def test_a_cache_loads_read_only_with_ids_kept_as_text(tmp_path):
    import tests.fake_source  # noqa: F401  (registers the fake source)
    from benchmark.data.cache import prepare
    from benchmark.data.spec import parse_dataset_spec

    cache = prepare(parse_dataset_spec("fake", subjects=3), "pretrain", tmp_path, progress=False)
    index = cache.index.copy()
    index["subject_id"] = ["007", "007", "010", "010", "0", "0", "00", "00", "1e3", "1e3", "nan", "nan"]
    index["video_id"] = index["subject_id"] + "1"
    index.to_csv(cache.root / "index.csv", index=False)
    loaded = FrameCache.load(cache.root)
    assert loaded.index["subject_id"].tolist() == index["subject_id"].tolist()  # "NA"-like ids stay text
    assert loaded.index["video_id"].tolist() == index["video_id"].tolist()
    assert loaded.frames.dtype == np.uint8 and not loaded.frames.flags.writeable
    digits = [f"{k:03d}" for k in range(len(index))]  # ids that look like numbers: "007" stays "007"
    index["subject_id"], index["video_id"] = digits, [f"0{d}" for d in digits]
    index.to_csv(cache.root / "index.csv", index=False)
    loaded = FrameCache.load(cache.root)
    assert loaded.index["subject_id"].tolist() == digits and loaded.index["video_id"].tolist() == [f"0{d}" for d in digits]
    assert np.array_equal(loaded.frames, cache.frames)
    for names in (["007", "1e3", "NA", ""] * 3, ["007", "010", "1", "2"] * 3):  # scanner names too stay as given
        index["scanner"] = names
        index.to_csv(cache.root / "index.csv", index=False)
        assert FrameCache.load(cache.root).index["scanner"].tolist() == names


def test_a_downstream_summary_names_its_scanners():
    cache = _cache([0] * 6, ["train"] * 4 + ["test"] * 2, ["4CH"], {"role": "downstream"})
    cache.index["scanner"] = ["Voluson E8", "Voluson E8", "", "Aloka", "Aloka", "Voluson E8"]
    assert cache.summary().splitlines()[5] == "scanners   Aloka, Voluson E8"


def test_an_empty_cache_and_an_unfinished_one(tmp_path):
    import json

    import pytest

    from benchmark.errors import UserError

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "frames.u8").write_bytes(b"")
    (tmp_path / "empty" / "index.csv").write_text("video_id,subject_id,frame_idx,label,split\n")
    (tmp_path / "empty" / "meta.json").write_text(json.dumps({"shape": [0, 8, 8], "class_names": []}))
    empty = FrameCache.load(tmp_path / "empty")
    assert empty.frames.shape == (0, 8, 8) and empty.frames.dtype == np.uint8 and len(empty.index) == 0
    (tmp_path / "half").mkdir()
    with pytest.raises(UserError) as info:
        FrameCache.load(tmp_path / "half")
    assert str(info.value) == (f"{tmp_path / 'half'} is not a finished frame cache (no meta.json); "
                               "run `sslbench data prepare` again to build it")


def test_the_labelled_positions_of_a_split_leave_out_its_unlabelled_frames():
    cache = _cache([0, -1, 2, 1, -1, 0], ["train", "train", "val", "train", "val", "test"], ["a", "b", "c"],
                   {"role": "downstream"})
    assert cache.labelled_positions("train").tolist() == [0, 3]
    assert cache.labelled_positions("val").tolist() == [2]
    assert cache.labelled_positions("test").tolist() == [5]

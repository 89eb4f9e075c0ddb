"""What the cache builder keeps from a source and how it refuses what it cannot use, exactly."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from benchmark.data.cache import prepare
from benchmark.data.source import Clip, Skipped, Source
from benchmark.errors import DataError, UserError


@dataclass
class ListSource(Source):
    """Yields the items it is given (clips and skips), for the pretrain role."""

    resolution: int = 4
    given: list = field(default_factory=list)
    kind = "listed"

    def fingerprint_parts(self, role: str) -> dict:
        return {"n": len(self.given), "ids": [getattr(i, "video_id", getattr(i, "path", "")) for i in self.given]}

    def class_names(self, role: str) -> list[str]:
        return []

    def items(self, role: str):
        yield from self.given


def _clip(vid: str, t: int, res: int = 4, frame_idx=None) -> Clip:
    return Clip(frames=np.full((t, res, res), len(vid), np.uint8), video_id=vid, subject_id=f"s-{vid}",
                frame_idx=frame_idx)


def test_frame_numbers_from_the_source_are_kept_and_default_to_0_to_t(tmp_path):
    source = ListSource(given=[_clip("a", 3, frame_idx=np.array([0, 5, 10])), _clip("bb", 2)])
    cache = prepare(source, "pretrain", tmp_path, progress=False)
    assert cache.index["frame_idx"].tolist() == [0, 5, 10, 0, 1]
    assert cache.index["video_id"].tolist() == ["a"] * 3 + ["bb"] * 2
    assert cache.index["split"].tolist() == ["pretrain"] * 5 and cache.index["label"].tolist() == [-1] * 5


def test_a_single_frame_is_a_cache(tmp_path):
    cache = prepare(ListSource(given=[_clip("a", 1)]), "pretrain", tmp_path, progress=False)
    assert cache.frames.shape == (1, 4, 4) and cache.meta["videos"] == 1 and cache.meta["subjects"] == 1


def test_no_frames_says_whether_files_were_skipped(tmp_path):
    with pytest.raises(UserError) as info:
        prepare(ListSource(given=[]), "pretrain", tmp_path, progress=False)
    assert str(info.value) == "dataset 'ListSource' produced no frames for pretrain (is the folder empty?)"
    skips = [Skipped("x.mp4", "truncated"), Skipped("y.mp4", "truncated")]
    with pytest.raises(UserError) as info:
        prepare(ListSource(given=skips), "pretrain", tmp_path, on_error="skip", progress=False)
    assert str(info.value) == ("dataset 'ListSource' produced no frames for pretrain (2 files skipped, see the "
                               "reasons with --on-error fail)")


def test_a_skipped_file_stops_the_build_with_its_name_and_the_way_out(tmp_path):
    with pytest.raises(DataError) as info:
        prepare(ListSource(given=[_clip("a", 2), Skipped("bad.mp4", "truncated stream")]), "pretrain", tmp_path,
                progress=False)
    assert str(info.value) == "bad.mp4: truncated stream (use --on-error skip to leave such files out and get a report)"


def test_a_clip_of_the_wrong_size_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError) as info:
        prepare(ListSource(given=[_clip("a", 2), _clip("odd", 2, res=5)]), "pretrain", tmp_path, progress=False)
    assert str(info.value) == "listed: clip odd has frames (5, 5), expected (4, 4)"

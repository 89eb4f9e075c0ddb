"""What the cache builder keeps from a source and how it refuses what it cannot use, exactly."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import benchmark.data.cache as cache_mod
from benchmark.data.cache import fingerprint, prepare
from benchmark.data.source import Clip, Skipped, Source
from benchmark.errors import DataError, UserError


@dataclass
class ListSource(Source):
    """Yields the items it is given (clips and skips), for the pretrain role."""

    resolution: int = 4
    given: list = field(default_factory=list)
    kind = "listed"

    def fingerprint_parts(self, role: str) -> dict:
        return {"n": len(self.given), "ids": [getattr(i, "video_id", getattr(i, "path", "")) for i in self.given],
                "role": role}

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


def test_the_fingerprint_of_a_source_is_stable_across_versions(tmp_path):
    """It keys the cache and every result's job: an unintended change orphans every result (bump
    CACHE_FORMAT when a change is intended)."""
    source = ListSource(given=[_clip("a", 2)])
    fp = fingerprint(source, "pretrain")
    assert fp == "25615a74559cd6b5ccc7ba2f0ca802a1cecbddab0ae1f13448ea25c6895e154a"
    assert fingerprint(source, "downstream") != fp
    cache = prepare(source, "pretrain", tmp_path, progress=False)
    assert cache.root == tmp_path / f"listed-pretrain-{fp[:16]}" and cache.fingerprint == fp


def test_roles_are_checked_by_name(tmp_path):
    with pytest.raises(UserError) as info:
        prepare(ListSource(given=[_clip("a", 1)]), "finetune", tmp_path, progress=False)
    assert str(info.value) == "role must be one of ('pretrain', 'downstream'), got 'finetune'"
    with pytest.raises(UserError) as info:
        prepare(ListSource(given=[_clip("a", 1)], roles=("pretrain",)), "downstream", tmp_path, progress=False)
    assert str(info.value) == "dataset 'ListSource' cannot be used for downstream (it serves: pretrain)"


def test_the_default_cache_dir_and_a_forced_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLBENCH_CACHE_DIR", str(tmp_path / "env"))
    source = ListSource(given=[_clip("a", 2)])
    first = prepare(source, "pretrain", None, progress=False)
    assert first.root.parent == tmp_path / "env"
    (first.root / "marker").write_text("")
    again = prepare(source, "pretrain", None, progress=False, rebuild=True)
    assert again.root == first.root and not (again.root / "marker").exists()


def test_an_unwritable_cache_dir_and_a_full_disk_say_so_exactly(tmp_path, monkeypatch):
    import errno
    import shutil

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError) as info:
        prepare(ListSource(given=[_clip("a", 1)]), "pretrain", blocker / "cache", progress=False)
    assert str(info.value).startswith(f"cache directory {blocker / 'cache'} is not writable (")
    assert str(info.value).endswith("); pass --cache-dir or set SSLBENCH_CACHE_DIR to a writable folder")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod, "_build", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 * 2**30, 7 * 2**30, 3 * 2**30))
    with pytest.raises(UserError) as info:
        prepare(ListSource(given=[_clip("a", 1)]), "pretrain", tmp_path / "c", progress=False)
    assert str(info.value) == (f"out of disk space while building the frame cache in {tmp_path / 'c'} (3.0 GiB free); "
                               "free space or point --cache-dir / SSLBENCH_CACHE_DIR elsewhere")


def test_a_live_build_of_another_process_is_left_alone_and_a_dead_one_removed(tmp_path):
    import os

    source = ListSource(given=[_clip("a", 2)])
    name = f"listed-pretrain-{fingerprint(source, 'pretrain')[:16]}"
    live = tmp_path / f".tmp-{name}-{os.getppid()}-0a1b2c3d"
    dead = tmp_path / f".tmp-{name}-999999999-0a1b2c3d"
    live.mkdir()
    dead.mkdir()
    prepare(source, "pretrain", tmp_path, progress=False)
    assert live.exists() and not dead.exists()


@dataclass
class LabelledSource(ListSource):
    classes: list = field(default_factory=list)
    roles: tuple = ("downstream",)

    def class_names(self, role: str) -> list[str]:
        return list(self.classes)


def _labelled(labels: list[int]) -> list[Clip]:
    return [Clip(frames=np.zeros((1, 4, 4), np.uint8), video_id=f"v{i}", subject_id=f"s{i}",
                 labels=np.array([label])) for i, label in enumerate(labels)]


def test_a_downstream_set_needs_labels_and_one_class_of_label_0_is_labels(tmp_path):
    for classes, labels in ((["a", "b"], [-1] * 6), ([], [0] * 6)):
        with pytest.raises(UserError) as info:
            prepare(LabelledSource(given=_labelled(labels), classes=classes), "downstream", tmp_path, progress=False)
        assert str(info.value) == "dataset 'LabelledSource' has no labels, so it cannot be a downstream set"
    cache = prepare(LabelledSource(given=_labelled([0] * 6), classes=["only"]), "downstream", tmp_path, progress=False)
    assert cache.index["label"].tolist() == [0] * 6


def test_on_error_must_be_fail_or_skip_and_meta_records_the_source(tmp_path):
    source = ListSource(given=[_clip("a", 2)])
    with pytest.raises(UserError) as info:
        prepare(source, "pretrain", tmp_path, on_error="ignore", progress=False)
    assert str(info.value) == "--on-error must be 'fail' or 'skip', got 'ignore'"
    meta = prepare(source, "pretrain", tmp_path, progress=False).meta
    assert meta["format"] == cache_mod.CACHE_FORMAT and meta["kind"] == "listed"
    assert meta["settings"] == source.fingerprint_parts("pretrain") and meta["settings"]["role"] == "pretrain"


@dataclass
class RoleClasses(ListSource):
    """Labelled for the downstream role only, as a DICOM manifest is."""

    roles: tuple[str, ...] = ("pretrain", "downstream")

    def class_names(self, role: str) -> list[str]:
        return ["4CH", "LVOT"] if role == "downstream" else []


def test_a_cache_holds_the_class_names_of_the_role_it_was_built_for(tmp_path):
    clips = [Clip(frames=np.full((1, 4, 4), k, np.uint8), video_id=f"v{k}", subject_id=f"s{k}",
                  labels=np.array([k % 2])) for k in range(10)]
    source = RoleClasses(given=clips)
    assert prepare(source, "downstream", tmp_path, progress=False).class_names == ["4CH", "LVOT"]
    assert prepare(source, "pretrain", tmp_path, progress=False).class_names == []


@dataclass
class PathParts(ListSource):
    """A plug-in source that names its input folder with a Path in its fingerprint parts."""

    root: Path = Path("/data/scans")

    def fingerprint_parts(self, role: str) -> dict:
        return {"root": self.root, "n": len(self.given)}


def test_fingerprint_parts_that_are_not_json_types_are_recorded_as_text(tmp_path):
    source = PathParts(given=[_clip("a", 2)])
    cache = prepare(source, "pretrain", tmp_path, progress=False)
    assert cache.meta["settings"] == {"root": "/data/scans", "n": 1}
    assert cache.fingerprint == fingerprint(PathParts(given=[_clip("a", 2)], root=Path("/data/scans")), "pretrain")
    assert fingerprint(PathParts(given=[_clip("a", 2)], root=Path("/data/other")), "pretrain") != cache.fingerprint

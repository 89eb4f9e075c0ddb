import json
import os
import stat

import numpy as np
import pytest

import tests.fake_source  # noqa: F401  registers the `fake` source
from benchmark.data.cache import FrameCache, prepare, say_skipped
from benchmark.data.spec import parse_dataset_spec
from benchmark.errors import DataError, UserError


def test_build_then_reuse(tmp_path):
    src = parse_dataset_spec("fake")
    cache = prepare(src, "pretrain", tmp_path, progress=False)
    assert cache.frames.shape == (6 * 4, 16, 16) and cache.frames.dtype == np.uint8
    assert list(cache.index.columns) == ["video_id", "subject_id", "frame_idx", "label", "split", "scanner"]
    assert (cache.index["split"] == "pretrain").all() and (cache.index["label"] == -1).all()
    mtime = (cache.root / "meta.json").stat().st_mtime_ns
    again = prepare(parse_dataset_spec("fake"), "pretrain", tmp_path, progress=False)
    assert again.root == cache.root and (again.root / "meta.json").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(np.asarray(again.frames), np.asarray(cache.frames))


def test_changed_setting_builds_a_new_cache(tmp_path):
    a = prepare(parse_dataset_spec("fake"), "pretrain", tmp_path, progress=False)
    b = prepare(parse_dataset_spec("fake", seed=1), "pretrain", tmp_path, progress=False)
    c = prepare(parse_dataset_spec("fake", resolution=8), "pretrain", tmp_path, progress=False)
    assert len({a.root, b.root, c.root}) == 3
    assert a.fingerprint != b.fingerprint
    assert c.frames.shape[1:] == (8, 8)


def test_frames_match_the_source_bytes(tmp_path):
    src = parse_dataset_spec("fake")
    expected = np.concatenate([c.frames for c in src.items("pretrain")])
    cache = prepare(src, "pretrain", tmp_path, progress=False)
    np.testing.assert_array_equal(np.asarray(cache.frames), expected)


def test_downstream_role_gets_subject_disjoint_splits(tmp_path):
    cache = prepare(parse_dataset_spec("fake", subjects=12), "downstream", tmp_path, progress=False)
    assert set(cache.index["split"]) == {"train", "val", "test"}
    assert (cache.index.groupby("subject_id")["split"].nunique() == 1).all()
    assert cache.class_names == ["a", "b", "c"]
    assert "train" in cache.summary() and "classes" in cache.summary()


def test_on_error_fail_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"video2\.mp4: truncated stream.*--on-error skip"):
        prepare(parse_dataset_spec("fake", bad_every=3), "pretrain", tmp_path, progress=False)
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".write")]


def test_on_error_skip_writes_a_report(tmp_path):
    cache = prepare(parse_dataset_spec("fake", bad_every=3), "pretrain", tmp_path, on_error="skip",
                    progress=False)
    report = (cache.root / "skipped.csv").read_text().splitlines()
    assert report[0] == "path,reason" and report[1:] == ["video2.mp4,truncated stream",
                                                        "video5.mp4,truncated stream"]
    assert cache.meta["skipped"] == 2 and cache.index["video_id"].nunique() == 4


def test_unwritable_cache_dir_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions: use a path under a regular file instead
            target = tmp_path / "file"
            target.write_text("")
            bad = target / "cache"
        else:
            bad = ro / "cache"
        with pytest.raises(UserError, match="not writable.*--cache-dir"):
            prepare(parse_dataset_spec("fake"), "pretrain", bad, progress=False)
    finally:
        ro.chmod(stat.S_IRWXU)


def test_out_of_disk_is_a_clear_error(tmp_path, monkeypatch):
    import errno

    import benchmark.data.cache as cache_mod

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod, "_build", full)
    with pytest.raises(UserError, match="out of disk space.*SSLBENCH_CACHE_DIR"):
        prepare(parse_dataset_spec("fake"), "pretrain", tmp_path, progress=False)
    assert not list(tmp_path.glob(".tmp-*"))


def test_loading_an_unfinished_cache_is_refused(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(UserError, match="not a finished frame cache"):
        FrameCache.load(tmp_path / "half")


@pytest.mark.parametrize("spec,match", [
    ("nonsense", "unknown dataset spec 'nonsense'.*synthetic"),
    ("fake:/x", "takes no path"),
])
def test_bad_specs(spec, match):
    with pytest.raises(UserError, match=match):
        parse_dataset_spec(spec)


def test_option_that_does_not_apply_is_named():
    with pytest.raises(UserError, match="--label-column does not apply to `fake`"):
        parse_dataset_spec("fake", label_column="Plane")


def test_role_the_source_cannot_serve(tmp_path):
    src = parse_dataset_spec("fake")
    src.roles = ("pretrain",)
    with pytest.raises(UserError, match="cannot be used for downstream"):
        prepare(src, "downstream", tmp_path, progress=False)


def test_meta_is_written_last_and_complete(tmp_path):
    cache = prepare(parse_dataset_spec("fake"), "downstream", tmp_path, progress=False)
    meta = json.loads((cache.root / "meta.json").read_text())
    assert meta["shape"] == [24, 16, 16] and meta["role"] == "downstream" and meta["subjects"] == 6


@pytest.mark.parametrize(("bad_every", "said"), [(3, "2 files skipped"), (6, "1 file skipped")])
def test_skipped_files_are_named_with_the_report_on_every_run(tmp_path, capsys, bad_every, said):
    source = parse_dataset_spec("fake", bad_every=bad_every)
    cache = prepare(source, "pretrain", tmp_path, on_error="skip", progress=False)
    assert capsys.readouterr().err == ""  # the build says nothing itself: the callers say it, with the final path
    expected = (f"{source.describe()} (pretrain): {said}, listed in {cache.root / 'skipped.csv'}; "
                "the results record the count\n")
    for _ in range(2):  # on the run that built the cache and on every later one that reuses it
        assert say_skipped(prepare(source, "pretrain", tmp_path, on_error="skip", progress=False)).root == cache.root
        assert capsys.readouterr().err == expected
    # A cache made in memory (no count recorded) has nothing to say.
    say_skipped(FrameCache(root=tmp_path, frames=cache.frames, index=cache.index, class_names=[], meta={}))
    assert capsys.readouterr().err == ""


def test_the_progress_bar_goes_to_stderr_by_default_and_not_when_turned_off(tmp_path, capsys):
    prepare(parse_dataset_spec("fake", bad_every=3), "pretrain", tmp_path / "quiet", on_error="skip",
            progress=False)
    assert capsys.readouterr() == ("", "")
    prepare(parse_dataset_spec("fake", bad_every=3), "pretrain", tmp_path / "shown", on_error="skip")
    out, err = capsys.readouterr()
    assert out == ""  # stdout stays clean for what the commands print
    assert "caching fake (pretrain): 16frame [" in err and "frame/s, skipped=2]" in err


@pytest.mark.parametrize("error", [OSError(5, "I/O error"), KeyboardInterrupt()])
def test_the_builds_own_error_reaches_the_user_even_if_its_temporary_folder_is_gone(tmp_path, monkeypatch, error):
    import shutil

    def build(source, role, tmp, *args):
        shutil.rmtree(tmp)  # e.g. removed by the user while the build ran
        raise error

    monkeypatch.setattr("benchmark.data.cache._build", build)
    with pytest.raises(type(error)) as info:
        prepare(parse_dataset_spec("fake"), "pretrain", tmp_path, progress=False)
    assert info.value is error
    assert not list(tmp_path.glob(".tmp-*"))

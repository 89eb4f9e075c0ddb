"""The fetal heart simulator: determinism, subject independence, anatomy, knobs, preview."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from benchmark.data.cache import prepare
from benchmark.data.preview import write_preview
from benchmark.data.simulator import timeline
from benchmark.data.simulator.anatomy import draw_level, sample_subject
from benchmark.data.simulator.config import PLANES, SIMULATOR_VERSION
from benchmark.data.simulator.source import SyntheticSource
from benchmark.data.spec import parse_dataset_spec
from benchmark.errors import UserError

TINY = dict(resolution=48, subjects=2, videos_per_subject=1, frames_per_video=6, downstream_subjects=3,
            downstream_images_per_subject=5)


def test_same_seed_gives_identical_bytes_and_another_seed_does_not():
    a, b, c = SyntheticSource(**TINY), SyntheticSource(**TINY), SyntheticSource(**TINY, seed=1)
    va, vb, vc = a.video(1, 0), b.video(1, 0), c.video(1, 0)
    assert va.frames.tobytes() == vb.frames.tobytes()
    assert np.array_equal(va.labels, vb.labels)
    assert va.frames.tobytes() != vc.frames.tobytes()
    ia, ib = a.labelled_images(2), b.labelled_images(2)
    assert b"".join(x.frames.tobytes() for x in ia) == b"".join(x.frames.tobytes() for x in ib)


def test_frames_are_uint8_fans_with_black_outside():
    clip = SyntheticSource(**TINY).video(0, 0)
    t, h, w = clip.frames.shape
    assert clip.frames.dtype == np.uint8 and (t, h, w) == (6, 48, 48)
    # Bottom corners lie beyond the sector's depth, the middle of the side edges beyond its angle.
    for frame in clip.frames:
        assert frame[-1, 0] == 0 and frame[-1, -1] == 0 and frame[h // 2, 0] == 0 and frame[h // 2, -1] == 0
        assert frame[int(h * 0.6), w // 2 - 4: w // 2 + 4].mean() > 10  # inside the fan there is an image


def test_subject_anatomy_does_not_depend_on_how_many_subjects_are_generated():
    small = SyntheticSource(**{**TINY, "subjects": 2})
    large = SyntheticSource(**{**TINY, "subjects": 9})
    assert small.video(1, 0).frames.tobytes() == large.video(1, 0).frames.tobytes()
    assert np.array_equal(small.subject("pretrain", 1).texture, large.subject("pretrain", 1).texture)


def test_downstream_subjects_are_disjoint_from_pretraining_and_labels_spread_over_classes(tmp_path):
    src = SyntheticSource(**{**TINY, "downstream_images_per_subject": 10})
    pre = prepare(src, "pretrain", tmp_path, progress=False)
    down = prepare(src, "downstream", tmp_path, progress=False)
    assert set(pre.index["subject_id"]).isdisjoint(set(down.index["subject_id"]))
    assert (pre.index["split"] == "pretrain").all()
    per_subject = down.index.groupby("subject_id")["label"].apply(lambda s: sorted(s.value_counts()))
    assert all(counts == [2] * len(PLANES) for counts in per_subject)  # 10 images = 2 of each class
    assert (down.index.groupby("subject_id")["split"].nunique() == 1).all()
    assert set(down.index["split"]) == {"train", "val", "test"}
    # A different subject stream: downstream subject 0 is not pretraining subject 0.
    assert not np.array_equal(src.subject("downstream", 0).texture, src.subject("pretrain", 0).texture)


def test_other_class_is_optional():
    src = SyntheticSource(**{**TINY, "include_other": True, "downstream_images_per_subject": 12})
    assert src.class_names("downstream") == [*PLANES, "other"]
    labels = np.concatenate([c.labels for c in src.labelled_images(0)])
    assert set(labels) == set(range(6))
    assert SyntheticSource(**TINY).class_names("pretrain") == list(PLANES)


def test_sweeps_change_the_label_within_a_clip_and_still_clips_do_not():
    moving = SyntheticSource(**{**TINY, "sweep": 1.0, "frames_per_video": 24, "subjects": 4})
    still = SyntheticSource(**{**TINY, "sweep": 0.0, "frames_per_video": 24, "subjects": 4})
    assert all(len(set(moving.video(k, 0).labels)) >= 2 for k in range(4))
    assert all(len(set(still.video(k, 0).labels)) == 1 for k in range(4))


def test_stride_keeps_every_nth_generated_frame():
    clip = SyntheticSource(**{**TINY, "stride": 3, "frames_per_video": 4}).video(0, 0)
    assert clip.frame_idx.tolist() == [0, 3, 6, 9] and len(clip.frames) == 4


def test_heartbeat_is_between_120_and_160_bpm():
    fps = 50.0
    times = np.arange(500) / fps  # 10 s
    for seed in range(5):
        contraction, systolic = timeline.heartbeat(np.random.default_rng(seed), times)
        onsets = np.sum((contraction[1:] > 0) & (contraction[:-1] == 0))
        assert 19 <= onsets <= 27  # 120–160 bpm over 10 s, ±1 for the phase at the edges
        assert contraction.min() >= 0 and contraction.max() <= 1 and 0 < systolic.mean() < 1


def test_no_motion_means_a_still_probe():
    times = np.arange(30) / 30
    still = timeline.probe_motion(np.random.default_rng(0), times, 0.0)
    moving = timeline.probe_motion(np.random.default_rng(0), times, 1.0)
    assert np.all(still["shift"] == 0) and np.all(still["rotation"] == 0) and np.all(still["zoom"] == 1)
    assert np.abs(moving["rotation"]).max() > 0.005


def test_three_vessel_view_has_three_lumens_of_decreasing_size():
    anat = sample_subject(np.random.default_rng(3))
    echo, atten = draw_level(anat, 3, True, 160)
    fluid, _ = ndimage.label(echo < 0.02)
    axis = np.linspace(-1.45, 1.45, 160)
    from benchmark.data.simulator.anatomy import _three_vessel_line

    centres, _ = _three_vessel_line(anat)
    areas = []
    for x, y in centres:
        lab = fluid[np.abs(axis - y).argmin(), np.abs(axis - x).argmin()]
        assert lab > 0
        areas.append(int((fluid == lab).sum()))
    assert areas[0] > areas[1] > areas[2]  # pulmonary trunk > aorta > SVC
    assert atten.max() > 5  # bone is there to cast shadows


def test_planes_differ_and_valves_move_with_the_heartbeat():
    anat = sample_subject(np.random.default_rng(0))
    maps = {lv: draw_level(anat, lv, True, 96)[0] for lv in range(5)}
    for a in range(5):
        for b in range(a + 1, 5):
            assert np.abs(maps[a] - maps[b]).mean() > 1e-3, (PLANES[a], PLANES[b])
    diastole = draw_level(anat, 0, False, 96)[0]
    assert np.abs(maps[0] - diastole).max() > 0.1


@pytest.mark.parametrize("knob,value", [("subjects", 0), ("stride", -1), ("noise", -0.5), ("sweep", 1.5),
                                        ("frames_per_video", "many"), ("resolution", 8),
                                        ("downstream_subjects", 2), ("include_other", "maybe")])
def test_impossible_knobs_are_user_errors_naming_the_knob(knob, value):
    with pytest.raises(UserError, match=knob):
        parse_dataset_spec("synthetic", **{knob: value})


def test_zoom_magnifies_the_thorax_and_keeps_the_default_fingerprint():
    still = {**TINY, "noise": 0.0, "resolution": 64}
    tissue = {}
    for zoom in (1.0, 1.5, 2.0):
        frames = np.stack([c.frames[0] for c in SyntheticSource(**still, zoom=zoom).labelled_images(0)])
        tissue[zoom] = float((frames > 40).mean())  # the thorax is the bright part of the sector
    assert tissue[1.0] < tissue[1.5] < tissue[2.0] and tissue[1.5] > 1.4 * tissue[1.0]
    for role in ("pretrain", "downstream"):
        assert "zoom" not in SyntheticSource(**TINY).fingerprint_parts(role)  # caches of before the knob stay valid
        assert SyntheticSource(**TINY, zoom=1.5).fingerprint_parts(role)["zoom"] == 1.5
    with pytest.raises(UserError) as info:
        parse_dataset_spec("synthetic", zoom=4)
    assert str(info.value) == "simulator knob zoom must be a number in [0.5, 3], got 4"


def test_fingerprint_covers_knobs_and_version():
    a = SyntheticSource(**TINY)
    assert a.fingerprint_parts("pretrain")["simulator_version"] == SIMULATOR_VERSION
    assert a.fingerprint_parts("pretrain") != SyntheticSource(**{**TINY, "noise": 0.5}).fingerprint_parts("pretrain")
    assert a.fingerprint_parts("pretrain") == SyntheticSource(**TINY).fingerprint_parts("pretrain")


def test_preview_writes_a_labelled_sheet_and_a_gif(tmp_path):
    src = SyntheticSource(**TINY)
    caches = {role: prepare(src, role, tmp_path / "cache", progress=False) for role in src.roles}
    paths = write_preview(caches, tmp_path / "out")
    assert [p.name for p in paths] == ["contact_sheet.png", "videos.gif"]
    sheet = Image.open(paths[0])
    assert sheet.size[1] > len(PLANES) * 96  # a row per class, tiles enlarged to >= 96 px
    gif = Image.open(paths[1])
    assert gif.n_frames == TINY["frames_per_video"]


def test_preview_of_an_unlabelled_cache_shows_videos(tmp_path):
    src = SyntheticSource(**TINY)
    cache = prepare(src, "pretrain", tmp_path / "cache", progress=False)
    cache.index["label"] = -1
    cache.class_names = []
    paths = write_preview({"pretrain": cache}, tmp_path / "out")
    sheet = np.asarray(Image.open(paths[0]))
    assert sheet.shape[0] > TINY["subjects"] * 96 and sheet.std() > 10

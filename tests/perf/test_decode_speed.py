"""Decode speed of a folder of clips into the frame cache (PyAV, parallel over files, every core): a
measurement in pytest-benchmark's extra_info. That an unchanged folder is not decoded again is a
behaviour, tested in tests/unit/test_sources_videos.py."""
from __future__ import annotations

import time

import pytest

from benchmark.data.cache import prepare
from benchmark.data.spec import parse_dataset_spec
from tests.unit.test_sources_videos import encode_clip

CLIPS, FRAMES, SIZE = 200, 60, 112


@pytest.mark.perf
@pytest.mark.parametrize("crop", ["none", "auto"])
def test_video_folder_decode_frames_per_s(benchmark, tmp_path, crop):
    folder = tmp_path / "clips"
    for k in range(CLIPS):  # 200 H.264 clips of 60 frames, 10 subjects
        encode_clip(folder / f"subject{k % 10:02d}" / f"clip{k:03d}.mp4", n_frames=FRAMES, size=(SIZE, SIZE),
                    seed=k, codec=("libx264", "yuv420p"))
    source = parse_dataset_spec(f"videos:{folder}", crop=crop, resolution=SIZE)

    def build():
        return prepare(source, "pretrain", tmp_path / f"cache-{time.perf_counter_ns()}", progress=False)

    start = time.perf_counter()
    cache = benchmark.pedantic(build, rounds=1, iterations=1)
    elapsed = time.perf_counter() - start
    n = cache.frames.shape[0]
    benchmark.extra_info["frames_per_s"] = round(n / elapsed)
    print(f"\n{n} frames ({CLIPS} clips, crop {crop}) in {elapsed:.1f} s: {n / elapsed:.0f} frames/s")
    assert n == CLIPS * FRAMES

"""Simulator throughput: 20,096 frames of 128×128, generated as the cache builder does. A measurement
(frames/s in pytest-benchmark's extra_info; BENCHMARKS.md has the 2-core figure, about 1,200
frames/s), not a pass/fail budget: a loaded machine is slower without anything being wrong."""
from __future__ import annotations

import time

import pytest

from benchmark.data.simulator.source import SyntheticSource

FRAMES = 20_000


@pytest.mark.perf
def test_twenty_thousand_frames(benchmark):
    # 157 subjects × 2 videos × 64 frames = 20,096 frames.
    source = SyntheticSource(resolution=128, subjects=157, videos_per_subject=2, frames_per_video=64)

    def generate() -> int:
        return sum(len(clip.frames) for clip in source.items("pretrain"))

    start = time.perf_counter()
    frames = benchmark.pedantic(generate, rounds=1, iterations=1)
    elapsed = time.perf_counter() - start
    benchmark.extra_info["frames_per_s"] = round(frames / elapsed)
    print(f"\n{frames} frames in {elapsed:.1f} s: {frames / elapsed:.0f} frames/s")
    assert frames >= FRAMES

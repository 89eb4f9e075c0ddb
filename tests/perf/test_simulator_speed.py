"""Simulator throughput: at least 20,000 frames of 128×128 in under 60 s on a 2-core machine."""
from __future__ import annotations

import time

import pytest

from benchmark.data.simulator.source import SyntheticSource

FRAMES = 20_000
BUDGET_S = 60.0


@pytest.mark.perf
def test_twenty_thousand_frames_in_a_minute(benchmark):
    # 157 subjects × 2 videos × 64 frames = 20,096 frames, generated as the cache builder does.
    source = SyntheticSource(resolution=128, subjects=157, videos_per_subject=2, frames_per_video=64)

    def generate() -> int:
        return sum(len(clip.frames) for clip in source.items("pretrain"))

    start = time.perf_counter()
    frames = benchmark.pedantic(generate, rounds=1, iterations=1)
    elapsed = time.perf_counter() - start
    benchmark.extra_info["frames_per_s"] = round(frames / elapsed)
    print(f"\n{frames} frames in {elapsed:.1f} s: {frames / elapsed:.0f} frames/s")
    assert frames >= FRAMES
    assert elapsed < BUDGET_S, f"{frames} frames took {elapsed:.1f} s ({frames / elapsed:.0f} frames/s)"

"""A tiny in-memory Source for tests of the cache and CLI plumbing (no simulator, no files), and a
tiny ready-made pretraining pool."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.cache import FrameCache
from benchmark.data.source import Clip, Skipped, Source
from benchmark.data.spec import register_source


def tiny_pool(root: Path) -> FrameCache:
    """24 random 32×32 frames: 3 videos of 8 frames, one subject each, all in the pretrain split."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (24, 32, 32), dtype=np.uint8)
    index = pd.DataFrame({"video_id": [f"v{i // 8}" for i in range(24)], "subject_id": [f"s{i // 8}" for i in range(24)],
                          "frame_idx": [i % 8 for i in range(24)], "label": -1, "split": "pretrain"})
    return FrameCache(root=root, frames=frames, index=index, class_names=[], meta={"fingerprint": "0" * 64})


@register_source("fake", needs_path=False)
@dataclass
class FakeSource(Source):
    resolution: int = 16
    subjects: int = 6
    frames: int = 4
    seed: int = 0
    bad_every: int = 0  # every k-th video is an unreadable "file"
    roles: tuple[str, ...] = ("pretrain", "downstream")

    def fingerprint_parts(self, role: str) -> dict:
        return {"subjects": self.subjects, "frames": self.frames, "seed": self.seed, "bad_every": self.bad_every}

    def class_names(self, role: str) -> list[str]:
        return ["a", "b", "c"]

    def items(self, role: str):
        rng = np.random.default_rng([self.seed, role == "downstream"])
        for s in range(self.subjects):
            if self.bad_every and s % self.bad_every == self.bad_every - 1:
                yield Skipped(f"video{s}.mp4", "truncated stream")
                continue
            frames = rng.integers(0, 256, (self.frames, self.resolution, self.resolution), dtype=np.uint8)
            labels = rng.integers(0, 3, self.frames) if role == "downstream" else None
            yield Clip(frames=frames, video_id=f"{role[0]}v{s}", subject_id=f"{role[0]}s{s}", labels=labels,
                       path=f"video{s}.mp4")

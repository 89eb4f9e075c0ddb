"""A tiny labelled downstream set and a tiny encoder, for protocol tests (no simulator, no timm)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from benchmark.data.cache import FrameCache
from benchmark.data.splits import assign_subject_splits

CLASS_NAMES = ["A", "B", "C"]


def fake_downstream(root: Path, n_subjects: int = 15, per_subject: int = 9, res: int = 16,
                    seed: int = 0, fingerprint: str = "f" * 64) -> FrameCache:
    """Class k = a bright square in quadrant k on noise: learnable, not trivially separable."""
    rng = np.random.default_rng(seed)
    k = len(CLASS_NAMES)
    n = n_subjects * per_subject
    labels = np.array([i % k for i in range(per_subject)] * n_subjects)
    frames = rng.integers(0, 120, size=(n, res, res), dtype=np.uint8)
    h = res // 2
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 2)
        frames[i, r * h:(r + 1) * h, c * h:(c + 1) * h] += rng.integers(40, 120, dtype=np.uint8)
    index = pd.DataFrame({"video_id": [f"v{i // per_subject}" for i in range(n)],
                          "subject_id": [f"s{i // per_subject:03d}" for i in range(n)],
                          "frame_idx": np.arange(n) % per_subject, "label": labels, "split": None})
    index["split"] = assign_subject_splits(index)
    return FrameCache(root=Path(root), frames=frames, index=index, class_names=list(CLASS_NAMES),
                      meta={"fingerprint": fingerprint, "spec": "fake", "role": "downstream"})


class TinyEncoder(nn.Module):
    name = "tiny"
    feat_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.proj = nn.Linear(32, self.feat_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(self.body(x)).flatten(1))
